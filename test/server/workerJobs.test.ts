// `strata worker` end to end: a server (this process, on its store's SQLite) that runs no job itself
// (--concurrency 0) and two workers as real CLI processes, each with its own store, each in a network
// namespace of its own (test/helpers/netns.ts), reaching the server only through the network. A job runs on a
// worker with its events, log and runner rows on the server; the next job of the same commit restores
// every step through the server's cache index; a worker killed (-9) mid-step loses its lease, and the
// other worker runs the job to success; nothing is left RUNNING.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openEngine } from '../../src/compose/engine.js';
import type { JobSummary } from '../../src/server/api/types.js';
import { startServer, type RunningServer } from '../../src/server/compose.js';
import { exec } from '../../src/util/exec.js';
import { startStrata, stopAfterTest, type StrataProcess } from '../helpers/cli.js';
import { createGitRepo } from '../helpers/engine.js';
import { requireRoot } from '../helpers/env.js';
import { createTestHost, type TestHost } from '../helpers/netns.js';
import { temporaryStore } from '../helpers/store.js';
import { ENDED, until } from '../helpers/wait.js';

test('strata worker: jobs run on workers; a second job restores through the server; a killed worker\'s job runs on another', { timeout: 600_000 }, async (t) => {
  if (!requireRoot(t)) return;
  // The test hosts go after the processes in them (hooks run in registration order).
  const processes = stopAfterTest(t);
  const hostA = createTestHost(t, 1);
  const hostB = createTestHost(t, 2);
  // What a killed worker left on its store (its machine, mounts): a new engine on the store reaps it,
  // after the processes stopped and before the stores are removed (hooks run in this order).
  const killed: string[] = [];
  t.after(async () => {
    for (const store of killed) await (await openEngine({ store, reporter: {} })).close();
  });
  const serverStore = await temporaryStore(t, 'strata-test-server-');
  const storeA = await temporaryStore(t, 'strata-test-worker-a-');
  const storeB = await temporaryStore(t, 'strata-test-worker-b-');
  const repo = createGitRepo(t, { Layerfile: 'FROM vm/debian:12\nCOPY . /app\nRUN cat /app/greeting\n', greeting: 'hello from a worker\n' });

  const server = await startServer({
    config: { storeRoot: serverStore, host: '0.0.0.0', port: 0, publicUrl: 'http://127.0.0.1', concurrency: 0, previewIdleMs: 60_000, leaseMs: 3000 },
    adminPassword: 'admin password for the test',
    logger: false,
    announce: () => {},
  });
  // Closed at the end of the body, not in t.after: the stores' removal hooks were registered first.
  try {
    await scenario(server, { repo, storeA, storeB, processes, killed, hostA, hostB });
  } finally {
    await server.close();
  }
});

async function scenario(
  server: RunningServer,
  { repo, storeA, storeB, processes, killed, hostA, hostB }: { repo: ReturnType<typeof createGitRepo>; storeA: string; storeB: string; processes: ReturnType<typeof stopAfterTest>; killed: string[]; hostA: TestHost; hostB: TestHost },
): Promise<void> {
  const { ctx } = server;
  await ctx.repos.add({ name: 'app', url: repo.dir });
  const port = new URL(server.url).port;
  const worker = async (name: string, store: string, host: TestHost): Promise<StrataProcess> => {
    const token = await ctx.workers.add(name);
    const started = processes.track(startStrata(['worker', '--server', `http://${host.gateway}:${port}`, '--token', token, '--store', store], undefined, { wrap: host.wrap }));
    await until(`worker ${name} connects`, 60_000, async () => (/connected to/.test(started.stderr()) ? true : started.child.exitCode !== null ? Promise.reject(new Error(started.stderr())) : undefined));
    return started;
  };
  const finished = (id: string) =>
    until(`job ${id} ends`, 300_000, async () => {
      const job = await ctx.jobs.get(id);
      return job && ENDED.has(job.status) ? job : undefined;
    });
  const trigger = async (commit: string): Promise<JobSummary> => ctx.jobs.enqueue({ repo: 'app', branch: 'main', commit, title: '', author: '', trigger: 'manual' });

  // The test hosts are apart: this host's loopback is not theirs, its veth address is how they reach it.
  // (Asynchronously: the server answers from this process.)
  const probe = async (host: TestHost, url: string) => (await exec(host.wrap[0] as string, [...host.wrap.slice(1), 'curl', '-s', '-o', '/dev/null', '-m', '3', url])).exitCode;
  assert.notEqual(await probe(hostA, `http://127.0.0.1:${port}/api/me`), 0, 'the server is not on the test host\'s loopback');
  assert.equal(await probe(hostA, `http://${hostA.gateway}:${port}/api/me`), 0);
  const workerA = await worker('wa', storeA, hostA);
  const head = repo.git('rev-parse', 'HEAD').trim();
  const first = await finished((await trigger(head)).id);
  assert.equal(first.status, 'SUCCESS', first.message ?? '');
  assert.equal(first.worker, 'wa');
  assert.equal(first.title, 'initial', 'the worker reported the commit\'s subject');
  assert.deepEqual([first.stepsRan, first.stepsCached], [2, 0]);
  assert.deepEqual(first.runners[0]?.steps.map((s) => s.status), ['done', 'done'], 'runner rows written by the server from the worker\'s events');
  assert.match(await ctx.jobs.log(first.id, {}), /hello from a worker/);

  const second = await finished((await trigger(head)).id);
  assert.equal(second.status, 'SUCCESS', second.message ?? '');
  assert.deepEqual([second.stepsRan, second.stepsCached], [0, 2], 'the server\'s cache index named the first job\'s snapshots on this worker');

  // A step that takes a while; worker A dies during it.
  const slow = repo.commit('slow step', { Layerfile: 'FROM vm/debian:12\nCOPY . /app\nRUN cat /app/greeting\nRUN echo slow step starts && sleep 6 && echo slow step ends\n' });
  const third = await trigger(slow);
  await until('the slow step runs on worker A', 120_000, async () => (/slow step starts/.test(await ctx.jobs.log(third.id, {})) ? true : undefined));
  killed.push(storeA);
  workerA.child.kill('SIGKILL');
  await workerA.exited;
  await worker('wb', storeB, hostB);
  const done = await finished(third.id);
  assert.equal(done.status, 'SUCCESS', done.message ?? '');
  assert.equal(done.worker, 'wb');
  // Worker B holds none of A's snapshots: the index names them, but B restores nothing it does not hold.
  assert.deepEqual([done.stepsRan, done.stepsCached], [3, 0]);
  const log = await ctx.jobs.log(third.id, {});
  assert.match(log, /worker wa stopped answering while this job ran: it was queued again/);
  assert.match(log, /slow step ends/);
  assert.deepEqual((await ctx.jobs.list({ status: 'RUNNING' })).map((j) => j.id), [], 'nothing is left RUNNING');
  const workers = await ctx.workers.list();
  assert.deepEqual(workers.map((w) => [w.name, w.lastSeenAt !== null]), [['wa', true], ['wb', true]]);
}
