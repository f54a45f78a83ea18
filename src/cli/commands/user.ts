// `strata user add <name>` (password from stdin) and `strata user token <name>` (prints a new API token),
// written straight into the store's database: its SQLite file, or the Postgres database a server keeps its
// state in (--database, as `strata serve --database`).
import { createUserStore } from '../../server/auth/users.js';
import type { StoreDatabase } from '../../store/database.js';
import { StrataError } from '../../errors.js';
import { openStoreDatabase } from '../../compose/engine.js';

export interface DatabaseOptions {
  store?: string | undefined;
  /** A Postgres URL; default $STRATA_DATABASE_URL, else the store's own SQLite file. */
  database?: string | undefined;
}

/** The Postgres URL of `--database` (else $STRATA_DATABASE_URL), checked; undefined: the store's own SQLite file. */
export function databaseUrlOf(database: string | undefined, env: NodeJS.ProcessEnv): string | undefined {
  const databaseUrl = database ?? env.STRATA_DATABASE_URL;
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new StrataError('STRATA_USAGE', `--database ${databaseUrl}: expected a Postgres URL`, { hint: 'postgres://user:password@host:5432/strata; without --database the store\'s own SQLite file is used' });
  }
  return databaseUrl;
}

/** The database the server of `--store` / `--database` (else $STRATA_DATABASE_URL) keeps its state in. */
export async function openCommandDatabase(options: DatabaseOptions, env: NodeJS.ProcessEnv = process.env): Promise<StoreDatabase> {
  return openStoreDatabase({ store: options.store, databaseUrl: databaseUrlOf(options.database, env) });
}

/** All of stdin; the password is its first line (so `echo pw |` and a file both work). */
async function readPassword(input: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of input) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  const password = Buffer.concat(chunks).toString('utf8').split(/\r?\n/, 1)[0] ?? '';
  if (password === '') throw new StrataError('STRATA_USAGE', 'no password on stdin', { hint: 'e.g. `read -rs PW; printf %s "$PW" | strata user add alice`' });
  return password;
}

export async function userAddCommand(name: string, options: DatabaseOptions, io: { stdin: NodeJS.ReadableStream; out: NodeJS.WritableStream } = { stdin: process.stdin, out: process.stdout }): Promise<number> {
  const password = await readPassword(io.stdin);
  const database = await openCommandDatabase(options);
  try {
    await createUserStore(database).add(name, password);
    io.out.write(`added user ${name}\n`);
    return 0;
  } finally {
    await database.close();
  }
}

export async function userTokenCommand(name: string, options: DatabaseOptions, out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const database = await openCommandDatabase(options);
  try {
    out.write(`${await createUserStore(database).createToken(name)}\n`);
    return 0;
  } finally {
    await database.close();
  }
}
