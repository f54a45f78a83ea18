// Users, login sessions and API tokens, in the store's database (SQLite or Postgres, through Kysely: one
// statement at a time, no transactions). Session ids and API tokens are random (256 bits) and leave the
// server only once, to their owner; the tables hold their sha256, so a copy of the database lets nobody in.
import { createHash, randomBytes } from 'node:crypto';
import { StrataError } from '../../errors.js';
import type { StoreDatabase } from '../../store/database.js';
import type { ServerUser } from '../context.js';
import { DECOY_HASH_PROMISE, hashPassword, verifyPassword } from './passwords.js';

export const USER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const SESSION_TTL_MS = 30 * 24 * 3600 * 1000;
/** API tokens start with this, so they are recognisable in configuration and secret scanners. */
export const TOKEN_PREFIX = 'strata_';

export interface UserStore {
  count(): Promise<number>;
  /** Creates a user; STRATA_CONFLICT if the name is taken. */
  add(name: string, password: string): Promise<ServerUser>;
  exists(name: string): Promise<boolean>;
  /** The user if the password is theirs, else null (same cost for unknown users). */
  verifyLogin(name: string, password: string): Promise<ServerUser | null>;
  createSession(user: string): Promise<{ id: string; expiresAt: number }>;
  endSession(id: string): Promise<void>;
  userForSession(id: string): Promise<ServerUser | null>;
  /** A new API token of `user` (shown once: only its hash is kept). */
  createToken(user: string): Promise<string>;
  userForToken(token: string): Promise<ServerUser | null>;
}

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

export function createUserStore(database: StoreDatabase, now: () => number = Date.now): UserStore {
  const db = database.sql;
  const userRow = (name: string) => db.selectFrom('server_users').select(['name', 'password_hash']).where('name', '=', name).executeTakeFirst();
  const store: UserStore = {
    async count() {
      const row = await db.selectFrom('server_users').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
      return Number(row.n);
    },
    async exists(name) {
      return (await userRow(name)) !== undefined;
    },
    async add(name, password) {
      if (!USER_NAME.test(name)) throw new StrataError('STRATA_USAGE', `invalid user name ${JSON.stringify(name)}`, { hint: 'letters, digits, ., _ and -, starting with a letter or digit' });
      if (password.length < 8) throw new StrataError('STRATA_USAGE', 'a password needs at least 8 characters');
      const hash = await hashPassword(password);
      const inserted = await db
        .insertInto('server_users')
        .values({ name, password_hash: hash, created_at: now() })
        .onConflict((oc) => oc.column('name').doNothing())
        .executeTakeFirst();
      if (Number(inserted.numInsertedOrUpdatedRows ?? 0) === 0) throw new StrataError('STRATA_CONFLICT', `user ${name} already exists`);
      return { name };
    },
    async verifyLogin(name, password) {
      const row = await userRow(name);
      const ok = await verifyPassword(password, row?.password_hash ?? (await DECOY_HASH_PROMISE));
      return row && ok ? { name: row.name } : null;
    },
    async createSession(user) {
      const id = randomBytes(32).toString('base64url');
      const at = now();
      const expiresAt = at + SESSION_TTL_MS;
      // Two statements, each complete on its own: a crash between them only leaves expired rows for the next login.
      await db.deleteFrom('server_sessions').where('expires_at', '<=', at).execute();
      await db.insertInto('server_sessions').values({ id_hash: sha256(id), user_name: user, created_at: at, expires_at: expiresAt }).execute();
      return { id, expiresAt };
    },
    async endSession(id) {
      await db.deleteFrom('server_sessions').where('id_hash', '=', sha256(id)).execute();
    },
    async userForSession(id) {
      const row = await db.selectFrom('server_sessions').select('user_name').where('id_hash', '=', sha256(id)).where('expires_at', '>', now()).executeTakeFirst();
      return row ? { name: row.user_name } : null;
    },
    async createToken(user) {
      if (!(await store.exists(user))) throw new StrataError('STRATA_NOT_FOUND', `no user ${user}`, { hint: 'create it with `strata user add <name>`' });
      const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
      await db.insertInto('server_api_tokens').values({ token_hash: sha256(token), user_name: user, created_at: now() }).execute();
      return token;
    },
    async userForToken(token) {
      const row = await db.selectFrom('server_api_tokens').select('user_name').where('token_hash', '=', sha256(token)).executeTakeFirst();
      return row ? { name: row.user_name } : null;
    },
  };
  return store;
}

/**
 * First start: with no user at all, creates `admin` with the given password or a random one, which is
 * written once to `announce` (stderr). Returns the generated password, if any.
 */
export async function ensureAdmin(users: UserStore, password: string | undefined, announce: (line: string) => void): Promise<string | undefined> {
  if ((await users.count()) > 0) return undefined;
  const generated = password === undefined ? randomBytes(12).toString('base64url') : undefined;
  await users.add('admin', password ?? (generated as string));
  announce(generated ? `strata: created user admin with password ${generated} (shown only this once)` : 'strata: created user admin with the given password');
  return generated;
}
