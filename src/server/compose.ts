// The composition file of `strata serve`: opens the engine on the store (holding the store lock, like
// `strata run`), the server's stores over the engine's database (the store's SQLite, or Postgres), the job service, and the HTTP app.
import { openEngine, type Engine } from '../compose/engine.js';
import { createServer, type CreateServerOptions } from './app.js';
import { ensureAdmin, createUserStore } from './auth/users.js';
import type { ServerConfig, ServerContext } from './context.js';
import { createJobService } from './jobs/service.js';
import { createRepoStore } from './repos/store.js';
import { loadOrCreateServerKey } from './repos/serverKey.js';
import { startPoller, type Poller } from './triggers/poller.js';
import { createWorkerStore } from './workers/store.js';

export interface StartServerOptions {
  config: ServerConfig;
  /** The first user's password when the store has no user yet (else a random one is announced). */
  adminPassword?: string | undefined;
  logger?: CreateServerOptions['logger'];
  uiDir?: string | undefined;
  /** Where one-time notices go (the generated admin password); default stderr. */
  announce?: ((line: string) => void) | undefined;
}

export interface RunningServer {
  /** The address it listens on, e.g. http://127.0.0.1:7080 (the real port when config.port was 0). */
  url: string;
  ctx: ServerContext;
  /** Stops taking jobs (running ones are put back to NEW), closes the app, then the engine and store. */
  close(): Promise<void>;
}

export async function startServer(options: StartServerOptions): Promise<RunningServer> {
  const { config } = options;
  // The engine's reporter is unused: each job runs with `{ ...engine, reporter: itsOwnReporter }`.
  const engine: Engine = await openEngine({ store: config.storeRoot, reporter: {}, databaseUrl: config.databaseUrl });
  try {
    const users = createUserStore(engine.database);
    await ensureAdmin(users, options.adminPassword, options.announce ?? ((line) => process.stderr.write(`${line}\n`)));
    const repos = createRepoStore(engine.database, loadOrCreateServerKey(config.storeRoot));
    const workers = createWorkerStore(engine.database);
    const { app, ctx } = await createServer({
      config,
      db: engine.database,
      engine: engine.deps,
      users,
      repos,
      workers,
      jobs: (base) => createJobService({ ...base, leaseMs: config.leaseMs }),
      logger: options.logger,
      ...(options.uiDir !== undefined ? { uiDir: options.uiDir } : {}),
    });
    try {
      const address = await app.listen({ host: config.host, port: config.port });
      ctx.jobs.start();
      const poller: Poller = startPoller({ db: engine.database, repos, jobs: ctx.jobs, log: ctx.log });
      let closing: Promise<void> | undefined;
      return {
        url: address,
        ctx,
        close: () =>
          (closing ??= (async () => {
            try {
              poller.stop();
              await ctx.jobs.stop();
              await app.close();
            } finally {
              await engine.close();
            }
          })()),
      };
    } catch (error) {
      await ctx.jobs.stop().catch(() => {});
      await app.close().catch(() => {});
      throw error;
    }
  } catch (error) {
    await engine.close();
    throw error;
  }
}
