// A server on Postgres with a `strata worker` (a real CLI process): Postgres down while the worker runs
// a step and until after it ended. The server's pool reconnects; the worker's calls that fail meanwhile (its events, its
// cache index and run log records) are retried, so the job ends as it would have, not in error.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { JobSummary } from '../../src/server/api/types.js';
import { startServer, type RunningServer } from '../../src/server/compose.js';
import { startStrata, stopAfterTest } from '../helpers/cli.js';
import { createGitRepo } from '../helpers/engine.js';
import { requireRoot } from '../helpers/env.js';
import { startPgServer, type PgServer } from '../helpers/pgServer.js';
import { temporaryStore } from '../helpers/store.js';
import { ENDED, until } from '../helpers/wait.js';

test('Postgres restarted while a worker runs a step: the job still succeeds, and its next run restores every step', { timeout: 600_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const processes = stopAfterTest(t);
  const pg = await startPgServer();
  t.after(() => pg.destroy());
  const serverStore = await temporaryStore(t, 'strata-test-server-');
  const workerStore = await temporaryStore(t, 'strata-test-worker-');
  const repo = createGitRepo(t, { Layerfile: 'FROM vm/debian:12\nRUN echo step one\nRUN echo waiting for postgres && sleep 6 && echo step two done\n' });
  const server = await startServer({
    config: { storeRoot: serverStore, databaseUrl: await pg.createDatabase(), host: '127.0.0.1', port: 0, publicUrl: 'http://127.0.0.1', concurrency: 0, previewIdleMs: 60_000 },
    adminPassword: 'admin password for the test',
    logger: false,
    announce: () => {},
  });
  // Closed at the end of the body, not in t.after: the stores' removal hooks were registered first.
  try {
    await scenario(server, pg, repo, workerStore, processes);
  } finally {
    await server.close();
  }
});

async function scenario(server: RunningServer, pg: PgServer, repo: ReturnType<typeof createGitRepo>, workerStore: string, processes: ReturnType<typeof stopAfterTest>): Promise<void> {
  const { ctx } = server;
  await ctx.repos.add({ name: 'app', url: repo.dir });
  const token = await ctx.workers.add('w1');
  const worker = processes.track(startStrata(['worker', '--server', server.url, '--token', token, '--store', workerStore]));
  await until('the worker connects', 60_000, async () => (/connected to/.test(worker.stderr()) ? true : undefined));
  const enqueue = (): Promise<JobSummary> => ctx.jobs.enqueue({ repo: 'app', branch: 'main', commit: repo.git('rev-parse', 'HEAD').trim(), title: '', author: '', trigger: 'manual' });
  const finished = (id: string) =>
    until(`job ${id} ends`, 300_000, async () => {
      const job = await ctx.jobs.get(id).catch(() => null); // Postgres may be restarting
      return job && ENDED.has(job.status) ? job : undefined;
    });

  const job = await enqueue();
  await until('the second step runs', 120_000, async () => (/waiting for postgres/.test(await ctx.jobs.log(job.id, {})) ? true : undefined));
  // Down past the step's end (6 s): the worker records the step while Postgres is away.
  await pg.stop();
  await new Promise((resolve) => setTimeout(resolve, 9000));
  await pg.start();
  const done = await finished(job.id);
  assert.equal(done.status, 'SUCCESS', `${done.message ?? ''}\n${worker.stderr()}`);
  assert.match(await ctx.jobs.log(job.id, {}), /step two done/);
  const again = await finished((await enqueue()).id);
  assert.deepEqual([again.status, again.stepsRan, again.stepsCached], ['SUCCESS', 0, 2], 'what was recorded across the restart is whole');
}
