// Users, login sessions and API tokens, in the store's database. Session ids and API tokens are random
// (256 bits) and leave the server only once, to their owner; the tables hold their sha256, so a copy of
// the database lets nobody in.
import { createHash, randomBytes } from 'node:crypto';
import { StrataError } from '../../errors.js';
import type { Db } from '../../store/database.js';
import type { ServerUser } from '../context.js';
import { DECOY_HASH_PROMISE, hashPassword, verifyPassword } from './passwords.js';

export const USER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const SESSION_TTL_MS = 30 * 24 * 3600 * 1000;
/** API tokens start with this, so they are recognisable in configuration and secret scanners. */
export const TOKEN_PREFIX = 'strata_';

export interface UserStore {
  count(): number;
  /** Creates a user; STRATA_CONFLICT if the name is taken. */
  add(name: string, password: string): Promise<ServerUser>;
  exists(name: string): boolean;
  /** The user if the password is theirs, else null (same cost for unknown users). */
  verifyLogin(name: string, password: string): Promise<ServerUser | null>;
  createSession(user: string): { id: string; expiresAt: number };
  endSession(id: string): void;
  userForSession(id: string): ServerUser | null;
  /** A new API token of `user` (shown once: only its hash is kept). */
  createToken(user: string): string;
  userForToken(token: string): ServerUser | null;
}

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

export function createUserStore(db: Db, now: () => number = Date.now): UserStore {
  const userRow = db.prepare<[string], { name: string; password_hash: string }>('SELECT name, password_hash FROM server_users WHERE name = ?');
  const store: UserStore = {
    count: () => (db.prepare('SELECT count(*) AS n FROM server_users').get() as { n: number }).n,
    exists: (name) => userRow.get(name) !== undefined,
    async add(name, password) {
      if (!USER_NAME.test(name)) throw new StrataError('STRATA_USAGE', `invalid user name ${JSON.stringify(name)}`, { hint: 'letters, digits, ., _ and -, starting with a letter or digit' });
      if (password.length < 8) throw new StrataError('STRATA_USAGE', 'a password needs at least 8 characters');
      const hash = await hashPassword(password);
      const inserted = db.prepare('INSERT INTO server_users (name, password_hash, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING').run(name, hash, now());
      if (inserted.changes === 0) throw new StrataError('STRATA_CONFLICT', `user ${name} already exists`);
      return { name };
    },
    async verifyLogin(name, password) {
      const row = userRow.get(name);
      const ok = await verifyPassword(password, row?.password_hash ?? (await DECOY_HASH_PROMISE));
      return row && ok ? { name: row.name } : null;
    },
    createSession(user) {
      const id = randomBytes(32).toString('base64url');
      const expiresAt = now() + SESSION_TTL_MS;
      db.prepare('DELETE FROM server_sessions WHERE expires_at <= ?').run(now());
      db.prepare('INSERT INTO server_sessions (id_hash, user_name, created_at, expires_at) VALUES (?, ?, ?, ?)').run(sha256(id), user, now(), expiresAt);
      return { id, expiresAt };
    },
    endSession(id) {
      db.prepare('DELETE FROM server_sessions WHERE id_hash = ?').run(sha256(id));
    },
    userForSession(id) {
      const row = db.prepare<[string, number], { user_name: string }>('SELECT user_name FROM server_sessions WHERE id_hash = ? AND expires_at > ?').get(sha256(id), now());
      return row ? { name: row.user_name } : null;
    },
    createToken(user) {
      if (!store.exists(user)) throw new StrataError('STRATA_NOT_FOUND', `no user ${user}`, { hint: 'create it with `strata user add <name>`' });
      const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
      db.prepare('INSERT INTO server_api_tokens (token_hash, user_name, created_at) VALUES (?, ?, ?)').run(sha256(token), user, now());
      return token;
    },
    userForToken(token) {
      const row = db.prepare<[string], { user_name: string }>('SELECT user_name FROM server_api_tokens WHERE token_hash = ?').get(sha256(token));
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
  if (users.count() > 0) return undefined;
  const generated = password === undefined ? randomBytes(12).toString('base64url') : undefined;
  await users.add('admin', password ?? (generated as string));
  announce(generated ? `strata: created user admin with password ${generated} (shown only this once)` : 'strata: created user admin with the given password');
  return generated;
}
