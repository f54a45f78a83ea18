// `strata serve --database postgres://...` as a user runs it: the real CLI as a process, a real Postgres
// (a throwaway cluster, test/helpers/pgServer.ts), a real git repository and real machines. All the
// server's state goes to Postgres (no SQLite file appears in the store): users and tokens made with the
// CLI's --database, repositories, jobs, runner rows, the run log and the cache index, so the second job
// of a commit restores every step, and a restarted server, or a restarted Postgres, carries on.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { JobDetail, JobSummary } from '../../src/server/api/types.js';
import { startStrata, stopAfterTest, type StrataProcess } from '../helpers/cli.js';
import { createGitRepo } from '../helpers/engine.js';
import { requireRoot } from '../helpers/env.js';
import { startPgServer } from '../helpers/pgServer.js';
import { freeLocalPort } from '../../src/util/net.js';
import { temporaryStore } from '../helpers/store.js';
import { ENDED, until } from '../helpers/wait.js';

test('strata serve --database: all state in Postgres; a second job restores every step; survives a server and a Postgres restart', { timeout: 600_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const processes = stopAfterTest(t);
  const pg = await startPgServer();
  t.after(() => pg.destroy());
  const store = await temporaryStore(t);
  const database = await pg.createDatabase();
  const repo = createGitRepo(t, { Layerfile: 'FROM vm/debian:12\nRUN echo built on postgres > /root/out\nRUN cat /root/out\n' });
  const port = await freeLocalPort();
  const base = `http://127.0.0.1:${port}`;

  const serve = (): StrataProcess =>
    processes.track(startStrata(['serve', '--store', store, '--database', database, '--listen', `127.0.0.1:${port}`, '--admin-password', 'admin password here']));
  const ready = (server: StrataProcess) =>
    until('the server answers', 60_000, async () => {
      if (server.child.exitCode !== null) throw new Error(`strata serve exited: ${server.stderr()}`);
      // Connection refused until it listens.
      return (await fetch(`${base}/api/login`, { method: 'POST' }).catch(() => undefined)) ? true : undefined;
    });
  let server = serve();
  await ready(server);

  // A token made by the CLI straight into Postgres.
  const token = await processes.run(['user', 'token', 'admin', '--store', store, '--database', database]);
  assert.equal(token.code, 0, token.stderr);
  const headers = { authorization: `Bearer ${token.stdout.trim()}`, 'content-type': 'application/json' };
  const api = async <T>(path: string, init: RequestInit = {}): Promise<T> => {
    const response = await fetch(`${base}${path}`, { ...init, headers });
    assert.ok(response.ok, `${init.method ?? 'GET'} ${path}: ${response.status} ${await response.clone().text()}`);
    return (await response.json()) as T;
  };
  const finished = (id: string) =>
    until(`job ${id} ends`, 300_000, async () => {
      const { job } = await api<{ job: JobDetail }>(`/api/jobs/${id}`);
      return ENDED.has(job.status) ? job : undefined;
    });

  await api('/api/repos', { method: 'POST', body: JSON.stringify({ name: 'pgapp', url: repo.dir }) });
  const first = (await api<{ job: JobSummary }>('/api/repos/pgapp/trigger', { method: 'POST', body: '{}' })).job;
  const firstDone = await finished(first.id);
  assert.equal(firstDone.status, 'SUCCESS', firstDone.message ?? '');
  assert.deepEqual([firstDone.stepsRan, firstDone.stepsCached], [2, 0]);
  assert.deepEqual(firstDone.runners[0]?.steps.map((s) => s.status), ['done', 'done'], 'runner rows in Postgres');
  assert.equal(existsSync(join(store, 'strata.db')), false, 'no SQLite database was made: the state is in Postgres');

  // Restarted server, same store and database: the user, the repository, the job and the cache are there.
  server.child.kill('SIGTERM');
  assert.equal(await server.exited, 0, server.stderr());
  server = serve();
  await ready(server);
  assert.doesNotMatch(server.stderr(), /created user admin/, 'the admin user was kept, not made again');
  const listed = await api<{ jobs: JobSummary[] }>('/api/jobs');
  assert.deepEqual(listed.jobs.map((j) => j.id), [first.id]);

  // Postgres restarted under the running server: its pool reconnects.
  await pg.stop();
  await pg.start();
  const second = (await until('a trigger after the Postgres restart', 30_000, async () => {
    const response = await fetch(`${base}/api/repos/pgapp/trigger`, { method: 'POST', body: '{}', headers }).catch(() => undefined);
    return response?.ok ? ((await response.json()) as { job: JobSummary }) : undefined;
  })).job;
  const secondDone = await finished(second.id);
  assert.equal(secondDone.status, 'SUCCESS', secondDone.message ?? '');
  assert.deepEqual([secondDone.stepsRan, secondDone.stepsCached], [0, 2], 'the cache index in Postgres named the first job\'s snapshots');
  const log = await fetch(`${base}/api/jobs/${first.id}/log`, { headers });
  assert.match(await log.text(), /built on postgres/);
});
