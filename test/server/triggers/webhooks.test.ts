// Webhooks through Fastify's inject on the real plugin, with the real repo store, queue and SQLite:
// GitHub, Gitea and Forgejo push and pull_request payloads, signatures, replays and ignored events.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import Fastify from 'fastify';
import type { EngineDeps } from '../../../src/engine/ports.js';
import type { ServerConfig, ServerContext } from '../../../src/server/context.js';
import { createJobService } from '../../../src/server/jobs/service.js';
import { loadOrCreateServerKey } from '../../../src/server/repos/serverKey.js';
import { createRepoStore } from '../../../src/server/repos/store.js';
import { decideWebhook, webhookRoutes, type WebhookDecision } from '../../../src/server/triggers/webhooks.js';
import { openDatabase } from '../../../src/store/database.js';
import { temporaryStore } from '../../helpers/store.js';
import { createWorkerStore } from '../../../src/server/workers/store.js';

const SECRET = 'webhook-secret-for-tests';
const SHA = 'a'.repeat(40);
const PR_SHA = 'b'.repeat(40);
const PR_URL = 'https://git.example.com/team/app/pull/7';

async function setup(t: TestContext) {
  const store = await temporaryStore(t);
  const db = await openDatabase(join(store, 'strata.db'));
  const repos = createRepoStore(db, loadOrCreateServerKey(store));
  await repos.add({ name: 'app', url: 'https://git.example.com/team/app.git', webhookSecret: SECRET });
  const config: ServerConfig = { storeRoot: store, host: '127.0.0.1', port: 0, publicUrl: 'http://strata.test', concurrency: 1, previewIdleMs: 60_000 };
  const app = Fastify({ logger: false });
  // The job service is never started here: jobs stay NEW, no engine is needed.
  const engine = {} as unknown as EngineDeps;
  const jobs = createJobService({ config, db, engine, repos, log: app.log });
  const ctx: ServerContext = { config, db, engine, repos, workers: createWorkerStore(db), jobs, log: app.log, authenticate: async () => null };
  await app.register(webhookRoutes, { ctx });
  // A route outside the plugin: the plugin's raw-body parser must not leak to it.
  app.post('/api/echo', async (request) => ({ type: typeof request.body, body: request.body }));
  t.after(async () => {
    await app.close();
    await jobs.stop();
    await db.close();
  });
  return { app, jobs };
}

type Forge = 'github' | 'gitea' | 'forgejo';

function headersFor(forge: Forge, event: string, delivery: string, body: string, secret = SECRET): Record<string, string> {
  const hex = createHmac('sha256', secret).update(body).digest('hex');
  switch (forge) {
    case 'github':
      return { 'x-github-event': event, 'x-github-delivery': delivery, 'x-hub-signature-256': `sha256=${hex}` };
    case 'gitea':
      return { 'x-gitea-event': event, 'x-gitea-delivery': delivery, 'x-gitea-signature': hex };
    case 'forgejo':
      return { 'x-forgejo-event': event, 'x-forgejo-delivery': delivery, 'x-forgejo-signature': hex };
  }
}

const pushPayload = (overrides: Record<string, unknown> = {}) => ({
  ref: 'refs/heads/main',
  before: 'c'.repeat(40),
  after: SHA,
  repository: { full_name: 'team/app' },
  pusher: { name: 'pusher-name' },
  head_commit: { id: SHA, message: 'Fix the login page\n\nLonger body.', author: { name: 'Ann Author', email: 'ann@example.com' } },
  commits: [{ id: SHA, message: 'Fix the login page\n\nLonger body.', author: { name: 'Ann Author' } }],
  ...overrides,
});

const prPayload = (action: string) => ({
  action,
  number: 7,
  pull_request: { title: 'Add search', html_url: PR_URL, user: { login: 'bob' }, head: { sha: PR_SHA, ref: 'feature/search' }, base: { ref: 'main' } },
});

async function deliver(app: Awaited<ReturnType<typeof setup>>['app'], forge: Forge, event: string, delivery: string, payload: unknown, options: { secret?: string; repo?: string; headers?: Record<string, string> } = {}) {
  const body = JSON.stringify(payload);
  return app.inject({
    method: 'POST',
    url: `/api/webhooks/${options.repo ?? 'app'}`,
    headers: { 'content-type': 'application/json', ...headersFor(forge, event, delivery, body, options.secret), ...options.headers },
    payload: body,
  });
}

for (const forge of ['github', 'gitea', 'forgejo'] as const) {
  test(`${forge}: a push makes a job for the pushed commit on its branch`, async (t) => {
    const { app, jobs } = await setup(t);
    const response = await deliver(app, forge, 'push', `${forge}-push-1`, pushPayload());
    assert.equal(response.statusCode, 202, response.body);
    const { job } = response.json() as { job: { id: string } };
    const stored = await jobs.get(job.id);
    assert.ok(stored);
    assert.deepEqual(
      { repo: stored.repo, branch: stored.branch, commit: stored.commit, title: stored.title, author: stored.author, trigger: stored.trigger, status: stored.status },
      { repo: 'app', branch: 'main', commit: SHA, title: 'Fix the login page', author: 'Ann Author', trigger: 'push', status: 'NEW' },
    );
    assert.equal(stored.pullRequestUrl, undefined, 'no pull request behind a push');
  });

  test(`${forge}: a pull request opened / synchronized / reopened makes a job for its head; closed is ignored`, async (t) => {
    const { app, jobs } = await setup(t);
    const update = forge === 'github' ? 'synchronize' : 'synchronized';
    for (const [i, action] of ['opened', update, 'reopened'].entries()) {
      const response = await deliver(app, forge, 'pull_request', `${forge}-pr-${i}`, prPayload(action));
      assert.equal(response.statusCode, 202, `${action}: ${response.body}`);
    }
    const made = await jobs.list({ repo: 'app' });
    assert.equal(made.length, 3);
    for (const job of made) {
      assert.deepEqual(
        { branch: job.branch, commit: job.commit, title: job.title, author: job.author, trigger: job.trigger, pullRequestUrl: job.pullRequestUrl },
        { branch: 'feature/search', commit: PR_SHA, title: 'Add search', author: 'bob', trigger: 'pull_request', pullRequestUrl: PR_URL },
      );
    }
    const closed = await deliver(app, forge, 'pull_request', `${forge}-pr-closed`, prPayload('closed'));
    assert.equal(closed.statusCode, 200);
    assert.deepEqual(closed.json(), { ignored: 'pull request action closed' });
    assert.equal((await jobs.list({})).length, 3);
  });
}

/** The job a decision asks for; fails the test when it asks for none. */
function jobOf(decision: WebhookDecision) {
  assert.ok(decision.kind === 'job', JSON.stringify(decision));
  return decision.job;
}

test('decideWebhook: a pull request job carries its web page (html_url); a push job and a payload without one carry none', () => {
  assert.equal(jobOf(decideWebhook('pull_request', prPayload('opened'))).pullRequestUrl, PR_URL);
  const { html_url: _url, ...withoutUrl } = prPayload('opened').pull_request;
  assert.equal(jobOf(decideWebhook('pull_request', { action: 'opened', pull_request: withoutUrl })).pullRequestUrl, undefined);
  assert.equal(jobOf(decideWebhook('push', pushPayload())).pullRequestUrl, undefined);
});

test('a bad, missing or stale signature is refused with 401 and makes no job', async (t) => {
  const { app, jobs } = await setup(t);
  const wrongSecret = await deliver(app, 'github', 'push', 'd-1', pushPayload(), { secret: 'not-the-secret' });
  assert.equal(wrongSecret.statusCode, 401);
  assert.equal((wrongSecret.json() as { error: { code: string } }).error.code, 'STRATA_UNAUTHORIZED');

  const body = JSON.stringify(pushPayload());
  const unsigned = await app.inject({ method: 'POST', url: '/api/webhooks/app', headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': 'd-2' }, payload: body });
  assert.equal(unsigned.statusCode, 401);

  // Signed for one body, sent with another (a changed commit).
  const tampered = await app.inject({
    method: 'POST',
    url: '/api/webhooks/app',
    headers: { 'content-type': 'application/json', ...headersFor('gitea', 'push', 'd-3', body) },
    payload: body.replace(SHA, 'd'.repeat(40)),
  });
  assert.equal(tampered.statusCode, 401);
  const garbage = await deliver(app, 'forgejo', 'push', 'd-4', pushPayload(), { headers: { 'x-forgejo-signature': 'zz' } });
  assert.equal(garbage.statusCode, 401);
  assert.equal((await jobs.list({})).length, 0);

  // A refused delivery is not remembered: the genuine one with the same id still goes through.
  assert.equal((await deliver(app, 'github', 'push', 'd-1', pushPayload())).statusCode, 202);
});

test('a replayed delivery id is refused with 409', async (t) => {
  const { app, jobs } = await setup(t);
  assert.equal((await deliver(app, 'github', 'push', 'same-delivery', pushPayload())).statusCode, 202);
  const replay = await deliver(app, 'github', 'push', 'same-delivery', pushPayload());
  assert.equal(replay.statusCode, 409);
  assert.equal((replay.json() as { error: { code: string } }).error.code, 'STRATA_CONFLICT');
  assert.equal((await jobs.list({})).length, 1);
});

test('other events, tag pushes and branch deletions are ignored with 200', async (t) => {
  const { app, jobs } = await setup(t);
  const ping = await deliver(app, 'github', 'ping', 'i-1', { zen: 'Keep it logically awesome.' });
  assert.equal(ping.statusCode, 200);
  assert.deepEqual(ping.json(), { ignored: 'event ping' });
  const tag = await deliver(app, 'gitea', 'push', 'i-2', pushPayload({ ref: 'refs/tags/v1.0' }));
  assert.deepEqual(tag.json(), { ignored: 'not a branch: refs/tags/v1.0' });
  const deletedGithub = await deliver(app, 'github', 'push', 'i-3', pushPayload({ ref: 'refs/heads/old', after: '0'.repeat(40), deleted: true, head_commit: null }));
  assert.deepEqual(deletedGithub.json(), { ignored: 'branch old was deleted' });
  // Gitea marks a deletion only by the all-zero `after`.
  const deletedGitea = await deliver(app, 'gitea', 'push', 'i-4', pushPayload({ ref: 'refs/heads/old', after: '0'.repeat(40), head_commit: null, commits: [] }));
  assert.equal(deletedGitea.statusCode, 200);
  assert.deepEqual(deletedGitea.json(), { ignored: 'branch old was deleted' });
  assert.equal((await jobs.list({})).length, 0);
});

test('unknown repos are 404; GitHub form-encoded payloads work; the raw-body parser stays in the plugin', async (t) => {
  const { app, jobs } = await setup(t);
  const unknown = await deliver(app, 'github', 'push', 'u-1', pushPayload(), { repo: 'nope' });
  assert.equal(unknown.statusCode, 404);

  const form = `payload=${encodeURIComponent(JSON.stringify(pushPayload({ ref: 'refs/heads/dev' })))}`;
  const formResponse = await app.inject({
    method: 'POST',
    url: '/api/webhooks/app',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headersFor('github', 'push', 'u-2', form) },
    payload: form,
  });
  assert.equal(formResponse.statusCode, 202, formResponse.body);
  assert.equal((await jobs.list({}))[0]?.branch, 'dev');

  const malformed = await deliver(app, 'github', 'push', 'u-3', { ref: 42 });
  assert.equal(malformed.statusCode, 400);

  const echo = await app.inject({ method: 'POST', url: '/api/echo', headers: { 'content-type': 'application/json' }, payload: '{"a":1}' });
  assert.deepEqual(echo.json(), { type: 'object', body: { a: 1 } });
});
