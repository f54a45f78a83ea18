// RepoStore over the store's database (SQLite or Postgres, through Kysely). Secret values and webhook
// secrets are stored encrypted with the server key; only names ever leave through this interface
// (values only to a job's run).
import { randomBytes } from 'node:crypto';
import { StrataError } from '../../errors.js';
import type { Secrets } from '../../engine/secrets.js';
import type { Selectable } from 'kysely';
import type { StoreDatabase } from '../../store/database.js';
import type { ServerReposTable } from '../../store/sql/schema.js';
import type { Repo } from '../api/types.js';
import { decrypt, encrypt } from './serverKey.js';
import type { RepoStore } from './types.js';

export const REPO_NAME = /^[a-z0-9][a-z0-9._-]{0,99}$/;
/** Secret names are environment variable names (SECRET ENV). */
export const SECRET_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
export const DEFAULT_BRANCH = 'main';

type RepoRow = Selectable<ServerReposTable>;

const toRepo = (row: RepoRow): Repo => ({
  name: row.name,
  url: row.url,
  defaultBranch: row.default_branch,
  pollSeconds: row.poll_seconds,
  publicPreviews: row.public_previews === 1,
  createdAt: row.created_at,
});

/**
 * Names in code-unit order, whatever the database's collation (Postgres clusters often sort by locale,
 * SQLite by bytes): the order is the store's, not the database's.
 */
const byCodeUnits = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Where a repository's SECRET ENV values come from, for the "missing secret" error (here or on a worker). */
export function describeRepoSecret(repo: string): (name: string) => string {
  return (name) => `the secrets of repository ${repo} on the server (set one with PUT /api/repos/${repo}/secrets/${name})`;
}

export function createRepoStore(database: StoreDatabase, serverKey: Buffer, now: () => number = Date.now): RepoStore {
  const db = database.sql;
  const row = (name: string) => db.selectFrom('server_repos').selectAll().where('name', '=', name).executeTakeFirst();
  const existing = async (name: string): Promise<RepoRow> => {
    const found = await row(name);
    if (!found) throw new StrataError('STRATA_NOT_FOUND', `no repository ${name}`, { hint: 'add it with `strata repo add <name> <url-or-path>`' });
    return found;
  };
  const names = async (repo: string): Promise<string[]> =>
    (await db.selectFrom('server_repo_secrets').select('name').where('repo', '=', repo).execute()).map((r) => r.name).sort(byCodeUnits);
  const checkSecretName = (name: string) => {
    if (!SECRET_NAME.test(name)) throw new StrataError('STRATA_USAGE', `invalid secret name ${JSON.stringify(name)}`, { hint: 'letters, digits and _, not starting with a digit' });
  };
  const secretContext = (repo: string, name: string) => `secret:${repo}/${name}`;
  const webhookContext = (repo: string) => `webhook:${repo}`;

  // Every write is one statement; the reads around it only check (the repo exists) or report (its
  // secrets' names). Rows reference their repository, so no write can leave a secret without one.
  return {
    async add(repo) {
      if (!REPO_NAME.test(repo.name)) throw new StrataError('STRATA_USAGE', `invalid repository name ${JSON.stringify(repo.name)}`, { hint: 'lowercase letters, digits, ., _ and -, starting with a letter or digit' });
      if (repo.url.trim() === '') throw new StrataError('STRATA_USAGE', 'a repository needs a git URL or a local path');
      const webhookSecret = repo.webhookSecret ?? randomBytes(24).toString('hex');
      const inserted = await db
        .insertInto('server_repos')
        .values({
          name: repo.name,
          url: repo.url,
          default_branch: repo.defaultBranch ?? DEFAULT_BRANCH,
          poll_seconds: repo.pollSeconds ?? null,
          public_previews: repo.publicPreviews ? 1 : 0,
          webhook_secret_encrypted: encrypt(serverKey, webhookSecret, webhookContext(repo.name)),
          created_at: now(),
        })
        .onConflict((oc) => oc.column('name').doNothing())
        .returningAll()
        .executeTakeFirst();
      if (!inserted) throw new StrataError('STRATA_CONFLICT', `repository ${repo.name} already exists`);
      return { repo: toRepo(inserted), webhookSecret };
    },
    async list() {
      const rows = await db.selectFrom('server_repos').selectAll().execute();
      return rows.sort((a, b) => byCodeUnits(a.name, b.name)).map(toRepo);
    },
    async get(name) {
      const found = await row(name);
      return found ? toRepo(found) : null;
    },
    async webhookSecret(name) {
      const found = await db.selectFrom('server_repos').select('webhook_secret_encrypted').where('name', '=', name).executeTakeFirst();
      return found ? decrypt(serverKey, found.webhook_secret_encrypted, webhookContext(name)) : null;
    },
    async setSecret(repo, name, value) {
      await existing(repo);
      checkSecretName(name);
      await db
        .insertInto('server_repo_secrets')
        .values({ repo, name, value_encrypted: encrypt(serverKey, value, secretContext(repo, name)), updated_at: now() })
        .onConflict((oc) =>
          oc.columns(['repo', 'name']).doUpdateSet((eb) => ({
            value_encrypted: eb.ref('excluded.value_encrypted'),
            updated_at: eb.ref('excluded.updated_at'),
          })),
        )
        .execute();
      return names(repo);
    },
    async deleteSecret(repo, name) {
      await existing(repo);
      const deleted = await db.deleteFrom('server_repo_secrets').where('repo', '=', repo).where('name', '=', name).executeTakeFirst();
      if (Number(deleted.numDeletedRows) === 0) throw new StrataError('STRATA_NOT_FOUND', `repository ${repo} has no secret ${name}`);
      return names(repo);
    },
    async secretNames(repo) {
      await existing(repo);
      return names(repo);
    },
    async secretsFor(repo): Promise<Secrets> {
      await existing(repo);
      const rows = await db.selectFrom('server_repo_secrets').select(['name', 'value_encrypted']).where('repo', '=', repo).execute();
      return {
        values: new Map(rows.map((r) => [r.name, decrypt(serverKey, r.value_encrypted, secretContext(repo, r.name))])),
        describeLookup: describeRepoSecret(repo),
      };
    },
  };
}
