// `strata user add <name>` (password from stdin) and `strata user token <name>` (prints a new API token),
// written straight into the store's database.
import { createUserStore } from '../../server/auth/users.js';
import { openDatabase } from '../../store/database.js';
import { StrataError } from '../../errors.js';
import { storePaths } from '../../compose/engine.js';

/** All of stdin; the password is its first line (so `echo pw |` and a file both work). */
async function readPassword(input: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of input) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  const password = Buffer.concat(chunks).toString('utf8').split(/\r?\n/, 1)[0] ?? '';
  if (password === '') throw new StrataError('STRATA_USAGE', 'no password on stdin', { hint: 'e.g. `read -rs PW; printf %s "$PW" | strata user add alice`' });
  return password;
}

export async function userAddCommand(name: string, options: { store?: string }, io: { stdin: NodeJS.ReadableStream; out: NodeJS.WritableStream } = { stdin: process.stdin, out: process.stdout }): Promise<number> {
  const password = await readPassword(io.stdin);
  const database = await openDatabase(storePaths(options.store).database);
  const db = database.raw;
  try {
    await createUserStore(db).add(name, password);
    io.out.write(`added user ${name}\n`);
    return 0;
  } finally {
    await database.close();
  }
}

export async function userTokenCommand(name: string, options: { store?: string }, out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const database = await openDatabase(storePaths(options.store).database);
  const db = database.raw;
  try {
    out.write(`${createUserStore(db).createToken(name)}\n`);
    return 0;
  } finally {
    await database.close();
  }
}
