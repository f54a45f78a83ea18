// `strata worker add <name>` (prints the worker's token, shown once), `strata worker revoke <name>` and
// `strata worker list`: the workers a server lets lease its jobs, written straight into the server's
// database (the store's SQLite file, or its Postgres with --database, as `strata user`).
import { createWorkerStore } from '../../server/workers/store.js';
import { StrataError } from '../../errors.js';
import { openCommandDatabase, type DatabaseOptions } from './user.js';

async function withWorkers<T>(options: DatabaseOptions, use: (workers: ReturnType<typeof createWorkerStore>) => Promise<T>): Promise<T> {
  const database = await openCommandDatabase(options);
  try {
    return await use(createWorkerStore(database));
  } finally {
    await database.close();
  }
}

export async function workerAddCommand(name: string, options: DatabaseOptions, out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const token = await withWorkers(options, (workers) => workers.add(name));
  out.write(`${token}\n`);
  return 0;
}

export async function workerRevokeCommand(name: string, options: DatabaseOptions, out: NodeJS.WritableStream = process.stdout): Promise<number> {
  await withWorkers(options, (workers) => workers.revoke(name));
  out.write(`revoked worker ${name}: its token is refused from now on\n`);
  return 0;
}

export async function workerListCommand(options: DatabaseOptions & { json?: boolean }, out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const list = await withWorkers(options, (workers) => workers.list());
  if (options.json) out.write(`${JSON.stringify({ workers: list }, null, 2)}\n`);
  else if (list.length === 0) out.write('no workers (add one with `strata worker add <name>`)\n');
  else {
    for (const w of list) {
      const state = w.revokedAt !== null ? 'revoked' : w.lastSeenAt === null ? 'never seen' : `last seen ${new Date(w.lastSeenAt).toISOString()}`;
      out.write(`${w.name}\t${state}\n`);
    }
  }
  return 0;
}

export interface WorkerRunOptions {
  server?: string;
  token?: string;
  store?: string;
  concurrency?: string;
}

/** `strata worker --server URL --token T`: runs the server's jobs until SIGTERM/SIGINT. */
export async function workerRunCommand(options: WorkerRunOptions, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const server = options.server ?? env.STRATA_SERVER;
  const token = options.token ?? env.STRATA_WORKER_TOKEN;
  if (!server || !token) {
    throw new StrataError('STRATA_USAGE', 'strata worker needs --server <url> and --token <token> (or $STRATA_SERVER, $STRATA_WORKER_TOKEN)', { hint: 'on the server: strata worker add <name> prints a token' });
  }
  const concurrency = Number(options.concurrency ?? 1);
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new StrataError('STRATA_USAGE', `--concurrency ${options.concurrency}: expected a whole number ≥ 1`);
  const { runWorker } = await import('../../worker/worker.js');
  const controller = new AbortController();
  const stop = (signal: NodeJS.Signals) => {
    process.stderr.write(`strata worker: ${signal}: stopping (running jobs go back to the server's queue); again to force\n`);
    controller.abort();
    process.once(signal, () => process.exit(130));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  await runWorker({ server, token, store: options.store, concurrency, signal: controller.signal, log: (line) => process.stderr.write(`${line}\n`) });
  return 0;
}
