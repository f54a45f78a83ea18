// `strata repo add|list`: the server's repositories, written straight into the store's database (a
// running server sees them at once: SQLite in WAL mode allows a second writer process; with --database,
// the Postgres database the server keeps its state in). Webhook secrets are encrypted with the server
// key of --store, so it must be the server's store.
import { resolve } from 'node:path';
import { StrataError } from '../../errors.js';
import { createRepoStore } from '../../server/repos/store.js';
import { localHeadBranch } from '../../server/repos/resolve.js';
import { loadOrCreateServerKey } from '../../server/repos/serverKey.js';
import { storePaths } from '../../compose/engine.js';
import { openCommandDatabase, type DatabaseOptions } from './user.js';

export interface RepoAddOptions extends DatabaseOptions {
  branch?: string;
  poll?: string;
}

/** Local paths are stored absolute; URLs (scheme://, scp-like host:path) as given. */
function normalizeRepoUrl(urlOrPath: string): string {
  const looksLikeUrl = /^[a-z][a-z0-9+.-]*:\/\//i.test(urlOrPath) || /^[^/]+@[^/]+:/.test(urlOrPath) || /^[^/.]+\.[^/]+:/.test(urlOrPath);
  return looksLikeUrl ? urlOrPath : resolve(urlOrPath);
}

export async function repoAddCommand(name: string, urlOrPath: string, options: RepoAddOptions, out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const pollSeconds = options.poll === undefined ? null : Number(options.poll);
  if (pollSeconds !== null && (!Number.isInteger(pollSeconds) || pollSeconds < 10)) {
    throw new StrataError('STRATA_USAGE', `--poll ${options.poll}: expected whole seconds ≥ 10`);
  }
  const url = normalizeRepoUrl(urlOrPath);
  const paths = storePaths(options.store);
  const database = await openCommandDatabase(options);
  try {
    const repos = createRepoStore(database, loadOrCreateServerKey(paths.root));
    const defaultBranch = options.branch ?? (await localHeadBranch(url)) ?? undefined;
    const { repo, webhookSecret } = await repos.add({ name, url, defaultBranch, pollSeconds });
    out.write(`added ${repo.name}: ${repo.url} (branch ${repo.defaultBranch}${repo.pollSeconds ? `, polled every ${repo.pollSeconds} s` : ''})\n`);
    out.write(`webhook: POST <server>/api/webhooks/${repo.name} with secret ${webhookSecret} (shown only this once)\n`);
    return 0;
  } finally {
    await database.close();
  }
}

export async function repoListCommand(options: DatabaseOptions & { json?: boolean }, out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const paths = storePaths(options.store);
  const database = await openCommandDatabase(options);
  try {
    const list = await createRepoStore(database, loadOrCreateServerKey(paths.root)).list();
    if (options.json) out.write(`${JSON.stringify({ repos: list }, null, 2)}\n`);
    else if (list.length === 0) out.write('no repositories (add one with `strata repo add <name> <url-or-path>`)\n');
    else for (const repo of list) out.write(`${repo.name}\t${repo.url}\t${repo.defaultBranch}${repo.pollSeconds ? `\tpoll ${repo.pollSeconds}s` : ''}\n`);
    return 0;
  } finally {
    await database.close();
  }
}
