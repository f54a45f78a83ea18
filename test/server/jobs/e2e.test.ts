// The job service end to end with the real engine (btrfs, runc machines, FUSE tracing) on a temporary
// store and real git repos: a job runs to SUCCESS with its events in order and a preview listed; the
// next commit is mostly cached; a failing step gives FAILURE with a debuggable runner; a BUTTON waits
// for approval; a cancelled job ends CANCELLED with no machine left; and a real `git push` to a bare
// repo whose post-receive hook calls the webhook makes a job that succeeds. Commit statuses go to a
// local receiver throughout.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import Fastify from 'fastify';
import { openEngine, type Engine } from '../../../src/compose/engine.js';
import type { JobEvent, JobSummary, RunnerDetail } from '../../../src/server/api/types.js';
import type { ServerConfig, ServerContext } from '../../../src/server/context.js';
import { createJobService } from '../../../src/server/jobs/service.js';
import type { JobService } from '../../../src/server/jobs/types.js';
import { loadOrCreateServerKey } from '../../../src/server/repos/serverKey.js';
import { createRepoStore } from '../../../src/server/repos/store.js';
import { webhookRoutes } from '../../../src/server/triggers/webhooks.js';
import { createGitRepo, ROOT_RUNNER } from '../../helpers/engine.js';
import { requireRoot } from '../../helpers/env.js';
import { removeStore } from '../../helpers/store.js';
import { storeTag } from '../../reliability/harness.js';
import { exec } from '../../../src/util/exec.js';
import { createWorkerStore } from '../../../src/server/workers/store.js';

const quietLog = { info: () => {}, warn: () => {}, error: () => {} };
const WEBHOOK_SECRET = 'push-test-secret';

function machinesOf(store: string): string[] {
  const root = join('/run/strata', storeTag(store), 'runc');
  if (!existsSync(root)) return [];
  return execFileSync('runc', ['--root', root, 'list', '-q'], { encoding: 'utf8' }).split('\n').filter(Boolean);
}

/** Every event of a job until its 'end' (stored ones first), or a timeout. */
function eventsUntilEnd(jobs: JobService, jobId: string, onEvent: (event: JobEvent) => void = () => {}, timeoutMs = 120_000): Promise<Array<{ seq: number; event: JobEvent }>> {
  return new Promise((resolve, reject) => {
    const events: Array<{ seq: number; event: JobEvent }> = [];
    let unsubscribe = () => {};
    let ended = false;
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new Error(`job ${jobId} did not end; events: ${events.map((e) => e.event.type).join(' ')}`));
    }, timeoutMs);
    unsubscribe = jobs.subscribe(jobId, 0, (seq, event) => {
      events.push({ seq, event });
      onEvent(event);
      if (event.type === 'end') {
        ended = true;
        clearTimeout(timer);
        queueMicrotask(() => unsubscribe());
        resolve(events);
      }
    });
    if (ended) unsubscribe();
  });
}

/** Event types in order without output (image progress may come early), consecutive repeats folded. */
function shape(events: Array<{ event: JobEvent }>): string[] {
  const types = events.filter(({ event }) => event.type !== 'output').map(({ event }) => (event.type === 'job' || event.type === 'end' || event.type === 'runnerEnd' ? `${event.type}:${'job' in event ? event.job.status : event.status}` : event.type));
  return types.filter((type, i) => type !== types[i - 1]);
}

test('jobs end to end on real machines: success, cache, failure, button, cancel, git push', { timeout: 600_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const store = mkdtempSync(join(tmpdir(), 'strata-jobs-e2e-'));
  let engine: Engine | undefined;
  let jobs: JobService | undefined;
  let app: ReturnType<typeof Fastify> | undefined;
  const statusServer = createServer((request: IncomingMessage, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString()));
    request.on('end', () => {
      statuses.push({ url: request.url ?? '', ...(JSON.parse(body) as { state: string; context: string }) });
      response.writeHead(201).end('{}');
    });
  });
  const statuses: Array<{ url: string; state: string; context: string }> = [];
  // Hooks run in registration order: the service and the engine stop before the store goes.
  t.after(async () => {
    await jobs?.stop();
    await app?.close();
    await new Promise((resolve) => statusServer.close(resolve));
    await engine?.close();
    await removeStore(store);
  });
  await new Promise<void>((resolve) => statusServer.listen(0, '127.0.0.1', resolve));

  engine = await openEngine({ store, reporter: {} });
  const repos = createRepoStore(engine.database, loadOrCreateServerKey(store));
  const config: ServerConfig = {
    storeRoot: store,
    host: '127.0.0.1',
    port: 0,
    publicUrl: 'http://strata.test',
    concurrency: 1,
    previewIdleMs: 60_000,
    statusApi: { baseUrl: `http://127.0.0.1:${(statusServer.address() as AddressInfo).port}`, token: 'tok' },
  };
  const service = createJobService({ config, db: engine.database, engine: engine.deps, repos, log: quietLog, tickMs: 100 });
  jobs = service;
  service.start();

  const repo = createGitRepo(t, {
    Layerfile: 'FROM vm/debian:12\nCOPY . /app\nRUN cat /app/file1\nRUN echo built > /built\nEXPOSE WEBSITE localhost:8000\n',
    file1: 'content-of-file1\n',
    'other.txt': 'unrelated\n',
  });
  await repos.add({ name: 'app', url: repo.dir });
  const first = repo.git('rev-parse', 'HEAD').trim();
  /**
   * Runs a job to its end. `onEvent` sees each event; what it does asynchronously is waited for before
   * this returns, and the first of those that fails fails the run at once.
   */
  const run = async (commit: string, onEvent?: (event: JobEvent, job: JobSummary) => Promise<void> | void) => {
    // Title and author empty, as the poller leaves them: the worker reads them from the commit.
    const job = await service.enqueue({ repo: 'app', branch: 'main', commit, title: '', author: '', trigger: 'manual' });
    const reactions: Array<Promise<void>> = [];
    const failures: unknown[] = [];
    let reactionFailed: (error: unknown) => void = () => {};
    const failure = new Promise<never>((_resolve, reject) => (reactionFailed = reject));
    const ended = eventsUntilEnd(service, job.id, (event) => {
      const reaction = onEvent?.(event, job);
      if (reaction) {
        reactions.push(
          reaction.catch((error: unknown) => {
            failures.push(error);
            reactionFailed(error);
          }),
        );
      }
    });
    const events = await Promise.race([ended, failure]);
    await Promise.all(reactions);
    if (failures.length > 0) throw failures[0];
    return { job, events, detail: await service.get(job.id) };
  };

  await t.test('a job runs to SUCCESS with its events in order and its preview listed', async () => {
    const { job, events, detail } = await run(first);
    assert.equal(detail?.status, 'SUCCESS', detail?.message ?? '');
    assert.deepEqual(events.map((e) => e.seq), events.map((_, i) => i + 1), 'seqs count from 1 without gaps');
    assert.deepEqual(shape(events), ['job:NEW', 'job:RUNNING', 'runStart', 'runnerStart', 'stepStatus', 'runnerEnd:SUCCESS', 'preview', 'end:SUCCESS']);
    assert.equal(detail?.title, 'initial');
    assert.equal(detail?.author, 'e2e');
    assert.ok(detail?.runId);
    const runner = detail?.runners[0];
    assert.equal(runner?.runner, ROOT_RUNNER);
    assert.deepEqual(runner?.steps.map((s) => s.status), ['done', 'done', 'done']);
    assert.deepEqual(runner?.previews, [{ url: `http://strata.test/preview/${job.id}/${ROOT_RUNNER}/`, target: 'http://localhost:8000' }]);
    assert.equal(detail?.stepsRan, 3);
    assert.match(await service.log(job.id, { runner: ROOT_RUNNER, step: 1 }), /content-of-file1/);
    assert.doesNotMatch(await service.log(job.id, { runner: ROOT_RUNNER, step: 2 }), /content-of-file1/);
  });

  await t.test('the next commit (an unread file changed) is restored from the cache', async () => {
    const second = repo.commit('touch other', { 'other.txt': 'changed\n' });
    const { detail } = await run(second);
    assert.equal(detail?.status, 'SUCCESS', detail?.message ?? '');
    assert.deepEqual(detail?.runners[0]?.steps.slice(1).map((s) => s.status), ['cached', 'cached']);
    assert.equal(detail?.stepsRan, 0);
    assert.ok((detail?.stepsCached ?? 0) >= 2);
    assert.equal(detail?.title, 'touch other');
  });

  await t.test('a failing step gives FAILURE and a debuggable runner', async () => {
    const failing = repo.commit('break it', { Layerfile: 'FROM vm/debian:12\nCOPY . /app\nRUN echo broken > /state && exit 3\n' });
    const { detail, events } = await run(failing);
    assert.equal(detail?.status, 'FAILURE');
    const runner = detail?.runners[0];
    assert.equal(runner?.status, 'FAILURE');
    assert.equal(runner?.debuggable, true);
    assert.deepEqual(runner?.previews, []);
    assert.equal(runner?.steps[1]?.status, 'failed');
    assert.ok(detail?.message, 'the job says what failed');
    assert.ok(!events.some((e) => e.event.type === 'preview'));
  });

  await t.test('a BUTTON waits until approved', async () => {
    const buttoned = repo.commit('button', { Layerfile: 'FROM vm/debian:12\nRUN echo before\nBUTTON deploy to staging?\nRUN echo after-approval\n' });
    let approvedWhileWaiting = false;
    const { detail, events } = await run(buttoned, async (event, job) => {
      if (event.type === 'button' && event.state === 'waiting') {
        // Still running, parked at the button.
        assert.equal((await service.get(job.id))?.status, 'RUNNING');
        await sleep(300);
        await service.approveButton(job.id, event.id, 'alice');
        approvedWhileWaiting = true;
      }
    });
    assert.equal(approvedWhileWaiting, true);
    assert.equal(detail?.status, 'SUCCESS', detail?.message ?? '');
    const buttons = events.flatMap((e) => (e.event.type === 'button' ? [e.event.state] : []));
    assert.deepEqual(buttons, ['waiting', 'approved']);
    assert.deepEqual(detail?.runners[0]?.buttons.map((b) => [b.message, b.state]), [['deploy to staging?', 'approved']]);
    assert.match(await service.log(detail?.id ?? '', {}), /approved by alice/);
  });

  await t.test('cancel of a running job ends CANCELLED and leaves no machine', async () => {
    const slow = repo.commit('slow', { Layerfile: 'FROM vm/debian:12\nRUN echo started && sleep 120 && echo finished\n' });
    const startedAt = Date.now();
    let cancelled = false;
    const { detail } = await run(slow, async (event, job) => {
      if (event.type === 'output' && event.data.includes('started') && !cancelled) {
        cancelled = true;
        await nextTurn();
        await service.cancel(job.id);
      }
    });
    assert.ok(cancelled);
    assert.equal(detail?.status, 'CANCELLED');
    assert.equal(detail?.runners[0]?.status, 'CANCELLED');
    assert.ok(Date.now() - startedAt < 100_000, 'the sleep was killed');
    assert.deepEqual(machinesOf(store), []);
  });

  await t.test('a runner with a FROM parent is WAITING_PARENTS until its parent ends', async () => {
    const family = repo.commit('family', { Layerfile: 'FROM vm/debian:12\nRUN echo parent > /parent\n', 'child/Layerfile': 'FROM ..\nRUN cat /parent\n' });
    const seen: string[] = [];
    // The worker writes the runner rows an event changed just after the event (queued, in order): the
    // stored job as of an event is the first one read that shows that event's own change.
    const storedOnce = async (jobId: string, written: (runners: RunnerDetail[]) => boolean): Promise<RunnerDetail[] | undefined> => {
      let runners: RunnerDetail[] | undefined;
      for (let read = 0; read < 1000; read++) {
        runners = (await service.get(jobId))?.runners;
        if (runners && written(runners)) break;
      }
      return runners;
    };
    const { detail } = await run(family, async (event, job) => {
      let stored: Promise<RunnerDetail[] | undefined> | undefined;
      if (event.type === 'runStart') stored = storedOnce(job.id, (runners) => runners.length === event.runners.length);
      if (event.type === 'runnerEnd' && event.runner === ROOT_RUNNER) stored = storedOnce(job.id, (runners) => runners.some((r) => r.runner === event.runner && r.status === event.status));
      if (stored) {
        const at = seen.push(event.type) - 1;
        seen[at] = `${event.type}:${(await stored)?.map((r) => `${r.runner}=${r.status}`).join(',')}`;
      }
    });
    assert.equal(detail?.status, 'SUCCESS', detail?.message ?? '');
    assert.deepEqual(seen, [`runStart:${ROOT_RUNNER}=NEW,child=WAITING_PARENTS`, `runnerEnd:${ROOT_RUNNER}=SUCCESS,child=WAITING_PARENTS`]);
    assert.deepEqual(detail?.runners.map((r) => [r.runner, r.level, r.status]), [[ROOT_RUNNER, 1, 'SUCCESS'], ['child', 2, 'SUCCESS']]);
  });

  await t.test('stop() puts a running job back to NEW; the next start() runs it again', async () => {
    const slow = repo.commit('slow again', { Layerfile: 'FROM vm/debian:12\nRUN echo started && sleep 120\n' });
    const job = await service.enqueue({ repo: 'app', branch: 'main', commit: slow, title: '', author: '', trigger: 'manual' });
    let starts = 0;
    let onStarted = () => {};
    const unsubscribe = service.subscribe(job.id, 0, (_seq, event) => {
      if (event.type === 'output' && event.data.includes('started')) {
        starts++;
        onStarted();
      }
    });
    t.after(unsubscribe);
    const started = () => new Promise<void>((resolve) => (onStarted = resolve));
    await started();
    await service.stop();
    assert.equal((await service.get(job.id))?.status, 'NEW');
    assert.match(await service.log(job.id, {}), /the server stopped: this job runs again when it starts/);
    assert.deepEqual(machinesOf(store), []);
    const again = started();
    service.start();
    await again;
    assert.equal(starts, 2);
    const ended = eventsUntilEnd(service, job.id);
    await Promise.all([ended, service.cancel(job.id)]);
    assert.equal((await service.get(job.id))?.status, 'CANCELLED');
  });

  await t.test('LABEL status=merge posts one status for all SPLIT copies; status=hidden posts none', async () => {
    const labelled = repo.commit('labels', {
      Layerfile: 'FROM vm/debian:12\nLABEL status=merge\nSPLIT 2\nRUN test "$SPLIT" = 0\n',
      'quiet/Layerfile': 'FROM vm/debian:12\nLABEL status=hidden\nRUN true\n',
      'child/Layerfile': null,
    });
    const { detail } = await run(labelled);
    assert.equal(detail?.status, 'FAILURE', 'copy 1 fails');
    assert.deepEqual(detail?.runners.map((r) => `${r.runner}=${r.status}`).sort(), [`${ROOT_RUNNER}-2=FAILURE`, `${ROOT_RUNNER}=SUCCESS`, 'quiet=SUCCESS']);
    await service.statuses?.flush();
    const forCommit = statuses.filter((s) => s.url.endsWith(`/statuses/${labelled}`));
    assert.deepEqual([...new Set(forCommit.map((s) => s.context))].sort(), ['strata', `strata/${ROOT_RUNNER}`], 'one merged context, none for the hidden runner or the copy');
    assert.equal(forCommit.filter((s) => s.context === `strata/${ROOT_RUNNER}`).at(-1)?.state, 'failure', 'as bad as the worst copy');
  });

  await t.test('a real git push to a bare repo whose hook calls the webhook makes a job that succeeds', async () => {
    app = Fastify({ logger: false });
    const ctx: ServerContext = { config, db: engine!.database, engine: engine!.deps, repos, workers: createWorkerStore(engine!.database), jobs: service, log: app.log, authenticate: async () => null };
    await app.register(webhookRoutes, { ctx });
    const base = await app.listen({ host: '127.0.0.1', port: 0 });

    const bare = mkdtempSync(join(tmpdir(), 'strata-jobs-bare-'));
    t.after(() => execFileSync('rm', ['-rf', bare]));
    execFileSync('git', ['init', '-q', '--bare', '-b', 'main', bare]);
    await repos.add({ name: 'pushed', url: bare, webhookSecret: WEBHOOK_SECRET });
    // GitHub's push payload (the fields strata reads), signed like GitHub signs it.
    const hook = `#!/bin/sh
while read old new ref; do
  body=$(printf '{"ref":"%s","before":"%s","after":"%s","head_commit":null}' "$ref" "$old" "$new")
  sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac '${WEBHOOK_SECRET}' | sed 's/^.* //')
  curl -fsS -X POST -H 'content-type: application/json' -H 'x-github-event: push' \\
    -H "x-github-delivery: $(cat /proc/sys/kernel/random/uuid)" -H "x-hub-signature-256: sha256=$sig" \\
    --data-binary "$body" '${base}/api/webhooks/pushed'
done
`;
    writeFileSync(join(bare, 'hooks', 'post-receive'), hook);
    chmodSync(join(bare, 'hooks', 'post-receive'), 0o755);

    const clone = createGitRepo(t, { Layerfile: 'FROM vm/debian:12\nCOPY . /src\nRUN cat /src/hello.txt\n', 'hello.txt': 'hello from a push\n' });
    const pushedCommit = clone.git('rev-parse', 'HEAD').trim();
    // Asynchronously: the hook's curl is answered by this very process.
    const pushed = await exec('git', ['push', '-q', bare, 'main'], { cwd: clone.dir, timeoutMs: 60_000 });
    assert.equal(pushed.exitCode, 0, pushed.stderr);
    const [job] = await service.list({ repo: 'pushed' });
    assert.ok(job, 'the hook made a job before the push returned');
    assert.deepEqual([job.trigger, job.branch, job.commit], ['push', 'main', pushedCommit]);
    await eventsUntilEnd(service, job.id);
    const detail = await service.get(job.id);
    assert.equal(detail?.status, 'SUCCESS', detail?.message ?? '');
    assert.equal(detail?.title, 'initial', 'the title comes from git log in the checkout');
    assert.match(await service.log(job.id, {}), /hello from a push/);
  });

  // Statuses were posted for the first job: pending first, success last, per runner and overall.
  await service.statuses?.flush();
  const overall = statuses.filter((s) => s.context === 'strata' && s.url.endsWith(`/statuses/${first}`));
  assert.equal(overall[0]?.state, 'pending');
  assert.equal(overall.at(-1)?.state, 'success');
  assert.ok(statuses.some((s) => s.context === `strata/${ROOT_RUNNER}` && s.state === 'failure'));
  assert.ok(statuses.every((s) => s.url.startsWith(`/repos/`)));
});
