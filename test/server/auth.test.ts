import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CREDENTIAL_ATTEMPTS } from '../../src/server/auth/rateLimit.js';
import { errorOf, startTestServer, USER } from './harness.js';

const cookieOf = (response: Response): string => {
  const setCookie = response.headers.getSetCookie().find((c) => c.startsWith('strata_session='));
  assert.ok(setCookie, 'a strata_session cookie is set');
  return setCookie.split(';', 1)[0] as string;
};

test('login: a wrong password or unknown user is 401, the cookie logs in, logout ends the session', async (t) => {
  const server = await startTestServer(t);
  for (const body of [{ username: USER.name, password: 'wrong password' }, { username: 'mallory', password: USER.password }]) {
    const denied = await server.api('/api/login', { method: 'POST', json: body, auth: false });
    assert.equal(denied.status, 401);
    assert.equal((await errorOf(denied)).code, 'STRATA_UNAUTHORIZED');
    assert.equal(denied.headers.getSetCookie().length, 0);
  }

  const login = await server.api('/api/login', { method: 'POST', json: { username: USER.name, password: USER.password }, auth: false });
  assert.equal(login.status, 200);
  assert.deepEqual(await login.json(), { user: { name: USER.name } });
  const setCookie = login.headers.getSetCookie()[0] ?? '';
  assert.match(setCookie, /HttpOnly/i);
  assert.match(setCookie, /SameSite=Lax/i);
  const cookie = cookieOf(login);
  // Only a hash of the session id is stored.
  const sessionId = cookie.split('=')[1] as string;
  const sessions = await server.db.sql.selectFrom('server_sessions').select('id_hash').execute();
  assert.equal(sessions.length, 1);
  assert.notEqual(sessions[0]?.id_hash, sessionId);

  const me = await server.api('/api/me', { headers: { cookie } });
  assert.equal(me.status, 200);
  assert.deepEqual(await me.json(), { user: { name: USER.name } });

  const logout = await server.api('/api/logout', { method: 'POST', headers: { cookie } });
  assert.equal(logout.status, 200);
  assert.deepEqual(await logout.json(), {});
  const after = await server.api('/api/me', { headers: { cookie } });
  assert.equal(after.status, 401);
});

test('login validation names the missing field', async (t) => {
  const server = await startTestServer(t);
  const response = await server.api('/api/login', { method: 'POST', json: { username: USER.name }, auth: false });
  assert.equal(response.status, 400);
  const error = await errorOf(response);
  assert.equal(error.code, 'STRATA_USAGE');
  assert.match(error.message, /body\.password/);
  const malformed = await server.api('/api/login', { method: 'POST', body: '{not json', headers: { 'content-type': 'application/json' }, auth: false });
  assert.equal(malformed.status, 400);
  assert.equal((await errorOf(malformed)).code, 'STRATA_USAGE');
});

test('bearer tokens: a valid token authenticates, a wrong one is 401 even next to a valid cookie', async (t) => {
  const server = await startTestServer(t);
  const me = await server.api('/api/me');
  assert.deepEqual(await me.json(), { user: { name: USER.name } });

  const login = await server.api('/api/login', { method: 'POST', json: { username: USER.name, password: USER.password }, auth: false });
  const cookie = cookieOf(login);
  for (const authorization of [`Bearer ${server.token}x`, 'Bearer', `Basic ${server.token}`]) {
    const denied = await server.api('/api/me', { headers: { authorization, cookie } });
    assert.equal(denied.status, 401, authorization);
  }
  // Tokens are stored as hashes only.
  const stored = await server.db.sql.selectFrom('server_api_tokens').select('token_hash').execute();
  assert.equal(stored.length, 1);
  assert.notEqual(stored[0]?.token_hash, server.token);
});

test('credential guessing is limited per client address: the 11th login attempt in a minute is 429, valid tokens still work', async (t) => {
  const server = await startTestServer(t);
  const statuses: number[] = [];
  for (let i = 0; i < CREDENTIAL_ATTEMPTS + 2; i++) {
    const denied = await server.api('/api/login', { method: 'POST', json: { username: USER.name, password: `guess ${i}` }, auth: false });
    statuses.push(denied.status);
    if (denied.status === 429) {
      assert.equal((await errorOf(denied)).code, 'STRATA_TOO_MANY_ATTEMPTS');
      assert.match(denied.headers.get('retry-after') ?? '', /^\d+$/);
    }
  }
  assert.deepEqual(statuses, [...Array(CREDENTIAL_ATTEMPTS).fill(401), 429, 429]);
  // Past the limit even the right password waits for the window: the address is what is limited.
  const right = await server.api('/api/login', { method: 'POST', json: { username: USER.name, password: USER.password }, auth: false });
  assert.equal(right.status, 429);
  // A valid token is no guess: scripts and workers with a token keep working.
  assert.equal((await server.api('/api/me')).status, 200);
});

test('wrong bearer tokens count as guesses too: past the limit they are 429, not 401', async (t) => {
  const server = await startTestServer(t);
  const statuses: number[] = [];
  for (let i = 0; i < CREDENTIAL_ATTEMPTS + 1; i++) {
    statuses.push((await server.api('/api/me', { headers: { authorization: `Bearer wrong-${i}` } })).status);
  }
  assert.deepEqual(statuses, [...Array(CREDENTIAL_ATTEMPTS).fill(401), 429]);
  // No Authorization header at all is not a guess: a plain 401, however often.
  for (let i = 0; i < 3; i++) assert.equal((await server.api('/api/me', { auth: false })).status, 401);
});

test('every /api route rejects a request without auth; login and webhooks do not ask for it', async (t) => {
  const server = await startTestServer(t);
  const routes: Array<[string, string]> = [
    ['POST', '/api/logout'],
    ['GET', '/api/me'],
    ['GET', '/api/repos'],
    ['POST', '/api/repos'],
    ['GET', '/api/repos/web'],
    ['GET', '/api/repos/web/secrets'],
    ['PUT', '/api/repos/web/secrets/TOKEN'],
    ['DELETE', '/api/repos/web/secrets/TOKEN'],
    ['POST', '/api/repos/web/trigger'],
    ['GET', '/api/jobs'],
    ['GET', '/api/jobs/job-1'],
    ['GET', '/api/jobs/job-1/events'],
    ['GET', '/api/jobs/job-1/log'],
    ['POST', '/api/jobs/job-1/cancel'],
    ['POST', '/api/jobs/job-1/retry'],
    ['POST', '/api/jobs/job-1/buttons/b1/approve'],
    ['GET', '/api/stats/durations'],
    ['GET', '/api/jobs/job-1/runners/base/terminal'],
    ['GET', '/api/no-such-route'],
  ];
  for (const [method, path] of routes) {
    const withBody = method === 'POST' || method === 'PUT';
    const response = await server.api(path, { method, auth: false, ...(withBody ? { json: {} } : {}) });
    assert.equal(response.status, 401, `${method} ${path}`);
    assert.equal((await errorOf(response)).code, 'STRATA_UNAUTHORIZED', `${method} ${path}`);
  }
  const login = await server.api('/api/login', { method: 'POST', json: {}, auth: false });
  assert.equal(login.status, 400);
  const webhook = await server.api('/api/webhooks/web', { method: 'POST', json: {}, auth: false });
  assert.notEqual(webhook.status, 401);
});

test('the web UI: files from the UI directory, index.html for client routes, JSON 404 under /api', async (t) => {
  const uiDir = mkdtempSync(join(tmpdir(), 'strata-ui-test-'));
  t.after(() => rmSync(uiDir, { recursive: true, force: true }));
  writeFileSync(join(uiDir, 'index.html'), '<!doctype html><title>strata ui</title>');
  writeFileSync(join(uiDir, 'app.js'), 'console.log("ui")');
  const server = await startTestServer(t, { uiDir });
  assert.match(await (await server.api('/', { auth: false })).text(), /strata ui/);
  assert.match(await (await server.api('/app.js', { auth: false })).text(), /console\.log/);
  const clientRoute = await server.api('/jobs/job-1', { auth: false });
  assert.equal(clientRoute.status, 200);
  assert.match(await clientRoute.text(), /strata ui/);
  const unknownApi = await server.api('/api/nope');
  assert.equal(unknownApi.status, 404);
  assert.equal((await errorOf(unknownApi)).code, 'STRATA_NOT_FOUND');
});

test('without a built UI, / says how to build it', async (t) => {
  const server = await startTestServer(t);
  const response = await server.api('/', { auth: false });
  assert.match(await response.text(), /npm run build/);
});
