// RepoStore over the store's SQLite database. Secret values and webhook secrets are stored encrypted
// with the server key; only names ever leave through this interface (values only to a job's run).
import { randomBytes } from 'node:crypto';
import { StrataError } from '../../errors.js';
import type { Secrets } from '../../engine/secrets.js';
import type { Db } from '../../store/database.js';
import type { Repo } from '../api/types.js';
import { decrypt, encrypt } from './serverKey.js';
import type { RepoStore } from './types.js';

export const REPO_NAME = /^[a-z0-9][a-z0-9._-]{0,99}$/;
/** Secret names are environment variable names (SECRET ENV). */
export const SECRET_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
export const DEFAULT_BRANCH = 'main';

interface RepoRow {
  name: string;
  url: string;
  default_branch: string;
  poll_seconds: number | null;
  public_previews: number;
  webhook_secret_encrypted: string;
  created_at: number;
}

const toRepo = (row: RepoRow): Repo => ({
  name: row.name,
  url: row.url,
  defaultBranch: row.default_branch,
  pollSeconds: row.poll_seconds,
  publicPreviews: row.public_previews === 1,
  createdAt: row.created_at,
});

export function createRepoStore(db: Db, serverKey: Buffer, now: () => number = Date.now): RepoStore {
  const row = (name: string) => db.prepare<[string], RepoRow>('SELECT * FROM server_repos WHERE name = ?').get(name);
  const existing = (name: string): RepoRow => {
    const found = row(name);
    if (!found) throw new StrataError('STRATA_NOT_FOUND', `no repository ${name}`, { hint: 'add it with `strata repo add <name> <url-or-path>`' });
    return found;
  };
  const names = (repo: string): string[] =>
    db.prepare<[string], { name: string }>('SELECT name FROM server_repo_secrets WHERE repo = ? ORDER BY name').all(repo).map((r) => r.name);
  const checkSecretName = (name: string) => {
    if (!SECRET_NAME.test(name)) throw new StrataError('STRATA_USAGE', `invalid secret name ${JSON.stringify(name)}`, { hint: 'letters, digits and _, not starting with a digit' });
  };
  const secretContext = (repo: string, name: string) => `secret:${repo}/${name}`;
  const webhookContext = (repo: string) => `webhook:${repo}`;

  return {
    add(repo) {
      if (!REPO_NAME.test(repo.name)) throw new StrataError('STRATA_USAGE', `invalid repository name ${JSON.stringify(repo.name)}`, { hint: 'lowercase letters, digits, ., _ and -, starting with a letter or digit' });
      if (repo.url.trim() === '') throw new StrataError('STRATA_USAGE', 'a repository needs a git URL or a local path');
      const webhookSecret = repo.webhookSecret ?? randomBytes(24).toString('hex');
      const inserted = db
        .prepare(
          `INSERT INTO server_repos (name, url, default_branch, poll_seconds, public_previews, webhook_secret_encrypted, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING`,
        )
        .run(repo.name, repo.url, repo.defaultBranch ?? DEFAULT_BRANCH, repo.pollSeconds ?? null, repo.publicPreviews ? 1 : 0, encrypt(serverKey, webhookSecret, webhookContext(repo.name)), now());
      if (inserted.changes === 0) throw new StrataError('STRATA_CONFLICT', `repository ${repo.name} already exists`);
      return { repo: toRepo(existing(repo.name)), webhookSecret };
    },
    list: () => db.prepare<[], RepoRow>('SELECT * FROM server_repos ORDER BY name').all().map(toRepo),
    get(name) {
      const found = row(name);
      return found ? toRepo(found) : null;
    },
    webhookSecret(name) {
      const found = row(name);
      return found ? decrypt(serverKey, found.webhook_secret_encrypted, webhookContext(name)) : null;
    },
    setSecret(repo, name, value) {
      existing(repo);
      checkSecretName(name);
      db.prepare(
        `INSERT INTO server_repo_secrets (repo, name, value_encrypted, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (repo, name) DO UPDATE SET value_encrypted = excluded.value_encrypted, updated_at = excluded.updated_at`,
      ).run(repo, name, encrypt(serverKey, value, secretContext(repo, name)), now());
      return names(repo);
    },
    deleteSecret(repo, name) {
      existing(repo);
      const deleted = db.prepare('DELETE FROM server_repo_secrets WHERE repo = ? AND name = ?').run(repo, name);
      if (deleted.changes === 0) throw new StrataError('STRATA_NOT_FOUND', `repository ${repo} has no secret ${name}`);
      return names(repo);
    },
    secretNames(repo) {
      existing(repo);
      return names(repo);
    },
    secretsFor(repo): Secrets {
      existing(repo);
      const rows = db.prepare<[string], { name: string; value_encrypted: string }>('SELECT name, value_encrypted FROM server_repo_secrets WHERE repo = ?').all(repo);
      return {
        values: new Map(rows.map((r) => [r.name, decrypt(serverKey, r.value_encrypted, secretContext(repo, r.name))])),
        describeLookup: (name) => `the secrets of repository ${repo} on the server (set one with PUT /api/repos/${repo}/secrets/${name})`,
      };
    },
  };
}
