// A real Postgres server for tests: Debian's postgresql-15 binaries, a throwaway cluster in a temporary
// directory (/tmp/strata-pg-*), listening on 127.0.0.1 at a free port, run as the `postgres` user
// (Postgres refuses root); fsync is off (a test server only has to survive its own crash, not the
// host's). Each test gets a database of its own; the cluster is stopped and its
// directory removed after the tests that started it, whatever happened (the suite's leftover check
// also knows these servers). It can be stopped and started again mid-test (reconnection tests).
import { execFile } from 'node:child_process';
import { chownSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { freeLocalPort } from '../../src/util/net.js';

const run = promisify(execFile);
export const PG_BIN = '/usr/lib/postgresql/15/bin';

export interface PgServer {
  readonly port: number;
  /** A connection URL for database `name` (default: the maintenance database). */
  url(name?: string): string;
  /** A new empty database; its connection URL. */
  createDatabase(): Promise<string>;
  /** Stops the server at once (as a crash would: no checkpoint), or starts it again. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops it and removes its directory. */
  destroy(): Promise<void>;
}

async function asPostgres(command: string, args: string[]): Promise<void> {
  await run('runuser', ['-u', 'postgres', '--', join(PG_BIN, command), ...args], { cwd: '/' });
}

async function ids(): Promise<{ uid: number; gid: number }> {
  const [uid, gid] = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])]);
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** Initialises and starts a throwaway cluster. */
export async function startPgServer(): Promise<PgServer> {
  const dir = await mkdtemp(join(tmpdir(), 'strata-pg-'));
  const data = join(dir, 'data');
  const port = await freeLocalPort();
  const url = (name = 'postgres'): string => `postgres://strata@127.0.0.1:${port}/${name}`;
  const start = (): Promise<void> =>
    asPostgres('pg_ctl', ['-D', data, '-w', '-t', '30', '-l', join(dir, 'log'), '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`, 'start']);
  const stop = async (): Promise<void> => {
    await asPostgres('pg_ctl', ['-D', data, '-w', '-m', 'immediate', 'stop']).catch(() => {});
  };
  try {
    const { uid, gid } = await ids();
    chownSync(dir, uid, gid);
    await asPostgres('initdb', ['-D', data, '-U', 'strata', '-A', 'trust', '--no-sync', '-E', 'UTF8', '--locale', 'C']);
    await start();
  } catch (error) {
    await stop();
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    port,
    url,
    async createDatabase() {
      const name = `t_${randomBytes(6).toString('hex')}`;
      const client = new pg.Client({ connectionString: url() });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${name}`);
      } finally {
        await client.end();
      }
      return url(name);
    },
    stop,
    start,
    async destroy() {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
