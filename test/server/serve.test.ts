import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseListen, serverConfig } from '../../src/cli/commands/serve.js';
import type { JobDetail, JobSummary } from '../../src/server/api/types.js';
import { startServer } from '../../src/server/compose.js';
import { createGitRepo } from '../helpers/engine.js';
import { requireRoot } from '../helpers/env.js';
import { temporaryStore } from '../helpers/store.js';

test('serve options: --listen forms, public URL, status API pairs', () => {
  assert.deepEqual(parseListen('0.0.0.0:8080'), { host: '0.0.0.0', port: 8080 });
  assert.deepEqual(parseListen('[::1]:7080'), { host: '::1', port: 7080 });
  assert.deepEqual(parseListen(':9000'), { host: '127.0.0.1', port: 9000 });
  assert.deepEqual(parseListen('9001'), { host: '127.0.0.1', port: 9001 });
  assert.throws(() => parseListen('localhost'), { code: 'STRATA_USAGE' });
  assert.throws(() => parseListen('host:99999'), { code: 'STRATA_USAGE' });
  const config = serverConfig({ store: '/tmp/s', listen: '0.0.0.0:7090', concurrency: '2', previewIdle: '5m' }, {});
  assert.deepEqual([config.publicUrl, config.concurrency, config.previewIdleMs, config.statusApi], ['http://127.0.0.1:7090', 2, 300_000, undefined]);
  assert.equal(serverConfig({ publicUrl: 'https://ci.example.com/' }, {}).publicUrl, 'https://ci.example.com');
  assert.throws(() => serverConfig({ statusApi: 'https://api.github.com' }, {}), { code: 'STRATA_USAGE' });
  assert.deepEqual(serverConfig({ statusApi: 'https://api.github.com/' }, { STRATA_STATUS_TOKEN: 't' }).statusApi, { baseUrl: 'https://api.github.com', token: 't' });
  assert.throws(() => serverConfig({ concurrency: '-1' }, {}), { code: 'STRATA_USAGE' });
  assert.equal(serverConfig({ concurrency: '0' }, {}).concurrency, 0, 'only workers run jobs');
});

test('the real composition: add a local repo, trigger it, the job reaches SUCCESS through the API', { timeout: 300_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const store = await temporaryStore(t);
  const repo = createGitRepo(t, { Layerfile: 'FROM vm/debian:12\nRUN echo hello from the server\n' });
  const announced: string[] = [];
  const server = await startServer({
    config: { storeRoot: store, host: '127.0.0.1', port: 0, publicUrl: 'http://127.0.0.1', concurrency: 1, previewIdleMs: 60_000 },
    adminPassword: 'admin password for the test',
    logger: false,
    announce: (line) => announced.push(line),
  });
  // Closed here, not in t.after: the store's removal hook was registered first and would run first.
  try {
    assert.deepEqual(announced, ['strata: created user admin with the given password']);
    const login = await fetch(`${server.url}/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password: 'admin password for the test' }) });
    assert.equal(login.status, 200);
    const cookie = (login.headers.getSetCookie()[0] ?? '').split(';', 1)[0] as string;
    const api = async (path: string, init: RequestInit = {}) => {
      const response = await fetch(`${server.url}${path}`, { ...init, headers: { cookie, 'content-type': 'application/json', ...init.headers } });
      assert.ok(response.ok, `${init.method ?? 'GET'} ${path}: ${response.status} ${await response.clone().text()}`);
      return response.json() as Promise<Record<string, unknown>>;
    };
    await api('/api/repos', { method: 'POST', body: JSON.stringify({ name: 'hello', url: repo.dir }) });
    const { job } = (await api('/api/repos/hello/trigger', { method: 'POST', body: '{}' })) as { job: JobSummary };
    assert.equal(job.status, 'NEW');

    let detail: JobDetail | undefined;
    for (;;) {
      detail = ((await api(`/api/jobs/${job.id}`)) as { job: JobDetail }).job;
      if (!['NEW', 'WAITING_PARENTS', 'RUNNING'].includes(detail.status)) break;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    assert.equal(detail.status, 'SUCCESS', detail.message ?? '');
    const log = await fetch(`${server.url}/api/jobs/${job.id}/log`, { headers: { cookie } });
    assert.match(await log.text(), /hello from the server/);
    const events = await fetch(`${server.url}/api/jobs/${job.id}/events`, { headers: { cookie } });
    const text = await events.text(); // the stream closes after the job's 'end' event
    assert.match(text, /"type":"end"/);
  } finally {
    await server.close();
  }
});
