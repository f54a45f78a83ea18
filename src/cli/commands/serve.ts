// `strata serve`: the team server (API, web UI, job queue and worker) on one port, until SIGTERM/SIGINT.
import { parseAge } from '../../engine/cacheDirs.js';
import { StrataError } from '../../errors.js';
import type { ServerConfig } from '../../server/context.js';
import { storePaths } from '../../compose/engine.js';
import { databaseUrlOf } from './user.js';

export interface ServeOptions {
  store?: string;
  database?: string;
  listen?: string;
  publicUrl?: string;
  concurrency?: string;
  adminPassword?: string;
  statusApi?: string;
  statusToken?: string;
  previewIdle?: string;
}

export const DEFAULT_LISTEN = '127.0.0.1:7080';

/** `host:port`, `[v6]:port`, `:port` or `port` (host 127.0.0.1). */
export function parseListen(listen: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(listen) ?? /^()()(\d+)$/.exec(listen);
  const port = Number(match?.[3]);
  if (!match || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new StrataError('STRATA_USAGE', `--listen ${listen}: expected host:port`, { hint: `e.g. ${DEFAULT_LISTEN} or 0.0.0.0:7080` });
  }
  return { host: match[1] || match[2] || '127.0.0.1', port };
}

export function serverConfig(options: ServeOptions, env: NodeJS.ProcessEnv = process.env): ServerConfig {
  const { host, port } = parseListen(options.listen ?? DEFAULT_LISTEN);
  const concurrency = Number(options.concurrency ?? 1);
  if (!Number.isInteger(concurrency) || concurrency < 0) {
    throw new StrataError('STRATA_USAGE', `--concurrency ${options.concurrency}: expected a whole number ≥ 0`, { hint: '0: the server runs no job itself, only `strata worker`s do' });
  }
  const statusToken = options.statusToken ?? env.STRATA_STATUS_TOKEN;
  if (options.statusApi !== undefined && statusToken === undefined) throw new StrataError('STRATA_USAGE', '--status-api needs --status-token (or $STRATA_STATUS_TOKEN)');
  if (options.statusApi === undefined && options.statusToken !== undefined) throw new StrataError('STRATA_USAGE', '--status-token needs --status-api');
  const shownHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  const databaseUrl = databaseUrlOf(options.database, env);
  return {
    storeRoot: storePaths(options.store).root,
    databaseUrl,
    host,
    port,
    publicUrl: (options.publicUrl ?? `http://${shownHost}:${port}`).replace(/\/+$/, ''),
    concurrency,
    previewIdleMs: parseAge(options.previewIdle ?? '10m'),
    statusApi: options.statusApi !== undefined && statusToken !== undefined ? { baseUrl: options.statusApi.replace(/\/+$/, ''), token: statusToken } : undefined,
  };
}

export async function serveCommand(options: ServeOptions): Promise<number> {
  const config = serverConfig(options);
  const { startServer } = await import('../../server/compose.js');
  const server = await startServer({ config, adminPassword: options.adminPassword ?? process.env.STRATA_ADMIN_PASSWORD });
  process.stderr.write(`strata: serving ${config.storeRoot} at ${server.url} (public URL ${config.publicUrl})\n`);
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  process.stderr.write(`strata: ${signal}: stopping (running jobs are put back in the queue); again to force\n`);
  process.once(signal, () => process.exit(130));
  await server.close();
  return 0;
}
