// The UserStore's conformance suite (users, login sessions, API tokens, the first admin), run against
// SQLite and Postgres alike (test/store/databases.ts). Route-level behaviour is in auth.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createHash } from 'node:crypto';
import { createUserStore, ensureAdmin, SESSION_TTL_MS, TOKEN_PREFIX } from '../../src/server/auth/users.js';
import { eachDatabase } from '../store/databases.js';

const PASSWORD = 'correct horse battery';
const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

eachDatabase((fresh) => {
  test('users: add, exists, count; a taken name is STRATA_CONFLICT; bad names and short passwords are STRATA_USAGE', async (t) => {
    const database = await fresh(t);
    const db = await database.open();
    const users = createUserStore(db, () => 1234);
    assert.equal(await users.count(), 0);
    assert.equal(await users.exists('alice'), false);
    assert.deepEqual(await users.add('alice', PASSWORD), { name: 'alice' });
    assert.equal(await users.exists('alice'), true);
    assert.equal(await users.exists('Alice'), false, 'names are case-sensitive');
    assert.equal(await users.count(), 1);

    await assert.rejects(users.add('alice', 'another password'), { code: 'STRATA_CONFLICT', message: 'user alice already exists' });
    for (const name of ['', '-alice', 'al ice', 'al/ice', 'a'.repeat(65)]) {
      await assert.rejects(users.add(name, PASSWORD), { code: 'STRATA_USAGE', message: `invalid user name ${JSON.stringify(name)}` }, name);
    }
    await assert.rejects(users.add('bob', 'seven77'), { code: 'STRATA_USAGE', message: 'a password needs at least 8 characters' });
    assert.deepEqual(await users.add('b.o_b-2', '8 chars!'), { name: 'b.o_b-2' }, 'exactly 8 characters is enough');
    assert.equal(await users.count(), 2, 'failed adds add nobody');

    const rows = await db.sql.selectFrom('server_users').selectAll().orderBy('name').execute();
    assert.deepEqual(rows.map((r) => [r.name, r.created_at]), [['alice', 1234], ['b.o_b-2', 1234]]);
    assert.ok(rows.every((r) => r.password_hash.startsWith('scrypt$') && !r.password_hash.includes(PASSWORD)));

    // What was added survives a reopen.
    const reopened = createUserStore(await database.open());
    assert.equal(await reopened.count(), 2);
    assert.equal(await reopened.exists('b.o_b-2'), true);
  });

  test('verifyLogin: the right password gives the user; a wrong one or an unknown user gives null', async (t) => {
    const database = await fresh(t);
    await createUserStore(await database.open()).add('alice', PASSWORD);
    const users = createUserStore(await database.open());
    assert.deepEqual(await users.verifyLogin('alice', PASSWORD), { name: 'alice' });
    assert.equal(await users.verifyLogin('alice', `${PASSWORD}x`), null);
    assert.equal(await users.verifyLogin('alice', ''), null);
    assert.equal(await users.verifyLogin('mallory', PASSWORD), null);
    assert.equal(await users.verifyLogin('ALICE', PASSWORD), null);
  });

  test('first start creates admin with a random password announced once; later starts create nobody; salts are per user', async (t) => {
    const db = await (await fresh(t)).open();
    const users = createUserStore(db);
    const lines: string[] = [];
    const password = await ensureAdmin(users, undefined, (line) => lines.push(line));
    assert.ok(password && password.length >= 12);
    assert.equal(lines.length, 1);
    assert.ok(lines[0]?.includes(password));
    assert.deepEqual(await users.verifyLogin('admin', password), { name: 'admin' });
    assert.equal(await users.verifyLogin('admin', `${password}x`), null);
    assert.equal(await ensureAdmin(users, 'another password', (line) => lines.push(line)), undefined);
    assert.equal(lines.length, 1);
    assert.equal(await users.verifyLogin('admin', 'another password'), null);
    // Per-user salt: the same password hashes differently.
    await users.add('bob', password);
    const hashes = await db.sql.selectFrom('server_users').select('password_hash').orderBy('name').execute();
    assert.equal(hashes.length, 2);
    assert.notEqual(hashes[0]?.password_hash, hashes[1]?.password_hash);
    assert.ok(hashes.every((h) => !h.password_hash.includes(password)));
  });

  test('first start with a given admin password uses it and announces no password', async (t) => {
    const users = createUserStore(await (await fresh(t)).open());
    const lines: string[] = [];
    assert.equal(await ensureAdmin(users, 'given admin password', (line) => lines.push(line)), undefined);
    assert.deepEqual(lines, ['strata: created user admin with the given password']);
    assert.deepEqual(await users.verifyLogin('admin', 'given admin password'), { name: 'admin' });
    assert.equal(await users.count(), 1);
  });

  test('sessions: created for a user, looked up by id until they expire (by the injected clock) or end', async (t) => {
    const database = await fresh(t);
    const db = await database.open();
    let clock = 1_000_000;
    const users = createUserStore(db, () => clock);
    await users.add('alice', PASSWORD);
    await users.add('bob', PASSWORD);

    const session = await users.createSession('alice');
    assert.equal(session.expiresAt, clock + SESSION_TTL_MS);
    assert.match(session.id, /^[A-Za-z0-9_-]{43}$/, '256 random bits');
    const other = await users.createSession('bob');
    assert.notEqual(other.id, session.id);
    assert.deepEqual(await users.userForSession(session.id), { name: 'alice' });
    assert.deepEqual(await users.userForSession(other.id), { name: 'bob' });
    assert.equal(await users.userForSession(`${session.id}x`), null);
    assert.equal(await users.userForSession(''), null);

    // Only the id's hash is stored.
    const stored = await db.sql.selectFrom('server_sessions').selectAll().orderBy('user_name').execute();
    assert.deepEqual(stored.map((s) => [s.user_name, s.id_hash, s.created_at, s.expires_at]), [
      ['alice', sha256(session.id), 1_000_000, 1_000_000 + SESSION_TTL_MS],
      ['bob', sha256(other.id), 1_000_000, 1_000_000 + SESSION_TTL_MS],
    ]);

    // A session outlives a reopen; ending it ends it for everyone.
    const reopened = createUserStore(await database.open(), () => clock);
    assert.deepEqual(await reopened.userForSession(session.id), { name: 'alice' });
    await reopened.endSession(session.id);
    assert.equal(await users.userForSession(session.id), null);
    assert.deepEqual(await users.userForSession(other.id), { name: 'bob' });
    await users.endSession(session.id); // again: nothing to end, no error
    await users.endSession('no such session');

    // Expiry: valid up to the millisecond before expiresAt.
    clock = other.expiresAt - 1;
    assert.deepEqual(await users.userForSession(other.id), { name: 'bob' });
    clock = other.expiresAt;
    assert.equal(await users.userForSession(other.id), null);
    // A new session removes the expired ones.
    const later = await users.createSession('alice');
    assert.equal(later.expiresAt, clock + SESSION_TTL_MS);
    assert.deepEqual(await db.sql.selectFrom('server_sessions').select('id_hash').execute(), [{ id_hash: sha256(later.id) }]);
    assert.deepEqual(await users.userForSession(later.id), { name: 'alice' });
  });

  test('API tokens: only for existing users (else STRATA_NOT_FOUND), prefixed, stored as hashes, looked up by value', async (t) => {
    const database = await fresh(t);
    const db = await database.open();
    const users = createUserStore(db, () => 42);
    await assert.rejects(users.createToken('nobody'), { code: 'STRATA_NOT_FOUND', message: 'no user nobody' });
    assert.deepEqual(await db.sql.selectFrom('server_api_tokens').selectAll().execute(), []);

    await users.add('alice', PASSWORD);
    await users.add('bob', PASSWORD);
    const first = await users.createToken('alice');
    const second = await users.createToken('alice');
    const bobs = await users.createToken('bob');
    for (const token of [first, second, bobs]) assert.match(token, new RegExp(`^${TOKEN_PREFIX}[A-Za-z0-9_-]{43}$`));
    assert.equal(new Set([first, second, bobs]).size, 3);
    assert.deepEqual(await users.userForToken(first), { name: 'alice' });
    assert.deepEqual(await users.userForToken(second), { name: 'alice' });
    assert.deepEqual(await users.userForToken(bobs), { name: 'bob' });
    assert.equal(await users.userForToken(`${first}x`), null);
    assert.equal(await users.userForToken(first.slice(TOKEN_PREFIX.length)), null);
    assert.equal(await users.userForToken(''), null);

    const stored = await db.sql.selectFrom('server_api_tokens').selectAll().execute();
    assert.deepEqual(new Set(stored.map((s) => s.token_hash)), new Set([first, second, bobs].map(sha256)));
    assert.ok(stored.every((s) => s.created_at === 42));
    // Tokens do not expire and outlive a reopen.
    assert.deepEqual(await createUserStore(await database.open(), () => Number.MAX_SAFE_INTEGER).userForToken(first), { name: 'alice' });
  });
});
