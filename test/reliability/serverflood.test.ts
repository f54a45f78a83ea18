// An output flood through the server: a step prints 1 GB while the API keeps answering, and the job's
// stored log holds the step's output up to the engine's cap, then the truncation marker.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireRoot } from '../helpers/env.js';
import { createGitRepo } from '../helpers/engine.js';
import { temporaryStore } from '../helpers/store.js';
import { startServer } from '../../src/server/compose.js';
import type { JobDetail, JobSummary } from '../../src/server/api/types.js';

test('reliability: a 1 GB output flood in a job; the server keeps answering and stores the capped log with its marker', { timeout: 300_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const store = await temporaryStore(t, 'strata-rel-serverflood-');
  const repo = createGitRepo(t, { Layerfile: 'FROM vm/debian:12\nRUN true\nRUN yes | head -c 1G; echo flood-done\n' });
  const password = 'flood test password';
  const server = await startServer({
    config: { storeRoot: store, host: '127.0.0.1', port: 0, publicUrl: 'http://127.0.0.1', concurrency: 1, previewIdleMs: 60_000 },
    adminPassword: password,
    logger: false,
    announce: () => {},
  });
  // Closed here, not in t.after: the store's removal hook was registered first and would run first.
  try {
    const login = await fetch(`${server.url}/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password }) });
    const cookie = (login.headers.getSetCookie()[0] ?? '').split(';', 1)[0] as string;
    const api = async (path: string, init: RequestInit = {}) => {
      const response = await fetch(`${server.url}${path}`, { ...init, headers: { cookie, 'content-type': 'application/json', ...init.headers }, signal: AbortSignal.timeout(30_000) });
      assert.ok(response.ok, `${init.method ?? 'GET'} ${path}: ${response.status}`);
      return response.json() as Promise<Record<string, unknown>>;
    };
    await api('/api/repos', { method: 'POST', body: JSON.stringify({ name: 'flood', url: repo.dir }) });
    const { job } = (await api('/api/repos/flood/trigger', { method: 'POST', body: '{}' })) as { job: JobSummary };

    // While the job runs, the API answers; the slowest answer is printed (a liveness bound, not a goal).
    let slowest = 0;
    let answeredWhileRunning = 0;
    let detail: JobDetail;
    for (;;) {
      const started = performance.now();
      detail = ((await api(`/api/jobs/${job.id}`)) as { job: JobDetail }).job;
      await api('/api/jobs?limit=5');
      slowest = Math.max(slowest, performance.now() - started);
      if (!['NEW', 'WAITING_PARENTS', 'RUNNING'].includes(detail.status)) break;
      if (detail.status === 'RUNNING') answeredWhileRunning++;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    assert.equal(detail.status, 'SUCCESS', detail.message ?? '');
    const log = await (await fetch(`${server.url}/api/jobs/${job.id}/log?runner=main-layerfile&step=1`, { headers: { cookie } })).text();
    console.log(`reliability server flood: 1 GB printed, ${Math.round(log.length / 1024 / 1024)} MB stored, API answered ${answeredWhileRunning} times while it ran, slowest pair of answers ${Math.round(slowest)} ms`);
    assert.ok(answeredWhileRunning > 0, 'the API answered while the flood ran');
    assert.ok(slowest < 10_000, `the API stayed responsive (slowest ${Math.round(slowest)} ms)`);
    assert.match(log, /\[strata\] output truncated: this step printed more than 64 MiB; the rest is not shown/);
    assert.ok(log.length < 70 * 1024 * 1024, `the stored log is capped (${log.length} bytes)`);
    assert.doesNotMatch(log, /flood-done/, 'what came after the cap is not in the log');
  } finally {
    await server.close();
  }
});
