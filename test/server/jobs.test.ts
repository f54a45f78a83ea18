import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { triggerCommand } from '../../src/cli/commands/trigger.js';
import type { JobEvent, JobSummary } from '../../src/server/api/types.js';
import { errorOf, MemoryJobs, startTestServer, USER } from './harness.js';

function gitRepo(t: TestContext): { dir: string; git: (...args: string[]) => string } {
  const dir = mkdtempSync(join(tmpdir(), 'strata-server-trigger-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const git = (...args: string[]) => execFileSync('git', ['-C', dir, '-c', 'user.name=Ada Lovelace', '-c', 'user.email=ada@example.com', ...args], { encoding: 'utf8' }).trim();
  git('init', '-q', '-b', 'main');
  git('commit', '-q', '--allow-empty', '-m', 'first commit');
  git('checkout', '-q', '-b', 'feature');
  git('commit', '-q', '--allow-empty', '-m', 'feature work');
  git('checkout', '-q', 'main');
  return { dir, git };
}

interface SseMessage {
  id?: string;
  data?: string;
  comment?: string;
}

/** Reads an event stream: each message as it arrives goes to `onMessage`; resolves when the server closes it. */
async function readEventStream(response: Response, onMessage: (message: SseMessage) => void = () => {}): Promise<SseMessage[]> {
  assert.ok(response.body);
  const messages: SseMessage[] = [];
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const message: SseMessage = {};
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) message.comment = line.slice(1).trim();
        else if (line.startsWith('id: ')) message.id = line.slice(4);
        else if (line.startsWith('data: ')) message.data = line.slice(6);
      }
      messages.push(message);
      onMessage(message);
    }
  }
  return messages;
}

const dataOf = (messages: SseMessage[]): Array<[string | undefined, JobEvent]> =>
  messages.filter((m) => m.data !== undefined).map((m) => [m.id, JSON.parse(m.data as string) as JobEvent]);

const output = (data: string): JobEvent => ({ type: 'output', runner: 'base', step: 0, stream: 'stdout', data, timeMs: 1 });

test('manual trigger resolves the branch or a commit prefix to a full commit with title and author', async (t) => {
  const jobs = new MemoryJobs();
  const server = await startTestServer(t, { jobs });
  const { dir, git } = gitRepo(t);
  await server.repos.add({ name: 'web', url: dir, defaultBranch: 'main' });

  const onDefault = await server.api('/api/repos/web/trigger', { method: 'POST', json: {} });
  assert.equal(onDefault.status, 200);
  const job = ((await onDefault.json()) as { job: JobSummary }).job;
  assert.deepEqual(
    [job.repo, job.branch, job.commit, job.title, job.author, job.trigger],
    ['web', 'main', git('rev-parse', 'main'), 'first commit', 'Ada Lovelace', 'manual'],
  );

  const onFeature = ((await (await server.api('/api/repos/web/trigger', { method: 'POST', json: { branch: 'feature' } })).json()) as { job: JobSummary }).job;
  assert.deepEqual([onFeature.branch, onFeature.commit, onFeature.title], ['feature', git('rev-parse', 'feature'), 'feature work']);

  const prefix = git('rev-parse', 'feature').slice(0, 8);
  const byCommit = ((await (await server.api('/api/repos/web/trigger', { method: 'POST', json: { commit: prefix } })).json()) as { job: JobSummary }).job;
  assert.equal(byCommit.commit, git('rev-parse', 'feature'));

  const noBranch = await server.api('/api/repos/web/trigger', { method: 'POST', json: { branch: 'nope' } });
  assert.equal(noBranch.status, 404);
  const badCommit = await server.api('/api/repos/web/trigger', { method: 'POST', json: { commit: 'xyz!' } });
  assert.equal(badCommit.status, 400);
  assert.match((await errorOf(badCommit)).message, /body\.commit/);
  assert.equal(jobs.jobs.size, 3);

  // `strata trigger` goes through the same route with a token.
  const out = new PassThrough();
  let printed = '';
  out.on('data', (chunk: Buffer) => (printed += chunk.toString()));
  assert.equal(await triggerCommand('web', { branch: 'feature', server: server.base, token: server.token }, out, {}), 0);
  assert.match(printed, /^job-4\tNEW\t/);
  await assert.rejects(triggerCommand('web', { server: server.base, token: 'wrong' }, out, {}), /401/);
});

test('job routes: unknown jobs are 404, queries are validated, the rest is delegated to the job service', async (t) => {
  const jobs = new MemoryJobs();
  const server = await startTestServer(t, { jobs });
  for (const [method, path] of [
    ['GET', '/api/jobs/nope'],
    ['GET', '/api/jobs/nope/log'],
    ['GET', '/api/jobs/nope/events'],
    ['POST', '/api/jobs/nope/cancel'],
    ['POST', '/api/jobs/nope/retry'],
    ['POST', '/api/jobs/nope/buttons/b/approve'],
  ] as const) {
    const response = await server.api(path, { method, ...(method === 'POST' ? { json: {} } : {}) });
    assert.equal(response.status, 404, `${method} ${path}`);
    assert.equal((await errorOf(response)).code, 'STRATA_NOT_FOUND');
  }
  const badStatus = await server.api('/api/jobs?status=DONE');
  assert.equal(badStatus.status, 400);
  assert.match((await errorOf(badStatus)).message, /query\.status/);
  const badLimit = await server.api('/api/jobs?limit=lots');
  assert.match((await errorOf(badLimit)).message, /query\.limit/);

  const job = await jobs.enqueue({ repo: 'web', branch: 'main', commit: 'a'.repeat(40), title: 't', author: 'a', trigger: 'push' });
  jobs.jobs.get(job.id)?.runners.push({
    runner: 'base', layerfile: 'Layerfile', level: 0, status: 'RUNNING', durationMs: null, message: null, steps: [], previews: [], debuggable: false,
    buttons: [{ id: 'deploy', line: 3, message: 'Deploy?', state: 'waiting' }],
  });
  const listed = (await (await server.api('/api/jobs?repo=web&status=NEW&limit=5&q=main')).json()) as { jobs: JobSummary[] };
  assert.deepEqual(listed.jobs.map((j) => j.id), [job.id]);
  assert.ok(jobs.calls.includes('list {"repo":"web","status":"NEW","q":"main","limit":5}'));
  assert.equal(((await (await server.api(`/api/jobs/${job.id}`)).json()) as { job: { runners: unknown[] } }).job.runners.length, 1);

  const log = await server.api(`/api/jobs/${job.id}/log?runner=base&step=2`);
  assert.match(log.headers.get('content-type') ?? '', /^text\/plain/);
  assert.equal(await log.text(), `\u001b[32mlog of ${job.id}\u001b[0m\n`);
  assert.ok(jobs.calls.includes(`log ${job.id} {"runner":"base","step":2}`));

  const retried = (await (await server.api(`/api/jobs/${job.id}/retry`, { method: 'POST', json: { noCache: true } })).json()) as { job: JobSummary };
  assert.deepEqual([retried.job.trigger, retried.job.options.noCache], ['retry', true]);
  const badRetry = await server.api(`/api/jobs/${job.id}/retry`, { method: 'POST', json: { noCache: 'yes' } });
  assert.match((await errorOf(badRetry)).message, /body\.noCache/);

  assert.equal((await server.api(`/api/jobs/${job.id}/buttons/nope/approve`, { method: 'POST' })).status, 404);
  assert.equal((await server.api(`/api/jobs/${job.id}/buttons/deploy/approve`, { method: 'POST' })).status, 200);
  assert.ok(jobs.calls.includes(`approve ${job.id} deploy by ${USER.name}`));

  const cancelled = (await (await server.api(`/api/jobs/${job.id}/cancel`, { method: 'POST' })).json()) as { job: JobSummary };
  assert.equal(cancelled.job.status, 'CANCELLED');

  const points = await server.api('/api/stats/durations?repo=web&limit=10');
  assert.deepEqual(await points.json(), { points: [] });
  assert.ok(jobs.calls.includes('durations {"repo":"web","limit":10}'));
});

test('job events (SSE): stored events after Last-Event-ID, then live ones, heartbeats, closed after end', async (t) => {
  const jobs = new MemoryJobs();
  const server = await startTestServer(t, { jobs, heartbeatMs: 50 });
  const job = await jobs.enqueue({ repo: 'web', branch: 'main', commit: 'b'.repeat(40), title: 't', author: 'a', trigger: 'manual' });
  for (const text of ['one', 'two', 'three']) jobs.publish(job.id, output(text));

  const response = await server.api(`/api/jobs/${job.id}/events`, { headers: { authorization: `Bearer ${server.token}`, 'last-event-id': '1' } });
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
  let heartbeats = 0;
  const messages = await readEventStream(response, (message) => {
    // Live events come after the stored ones were received, and after a heartbeat proved the stream idle-safe.
    if (message.comment === 'heartbeat' && ++heartbeats === 1) {
      jobs.publish(job.id, output('four'));
      jobs.publish(job.id, { type: 'end', job: { ...job, status: 'SUCCESS' } });
      jobs.publish(job.id, output('after the end'));
    }
  });
  const events = dataOf(messages);
  assert.deepEqual(
    events.map(([id, event]) => `${id}:${event.type === 'output' ? event.data : event.type}`),
    ['2:two', '3:three', '4:four', '5:end'],
  );
  assert.ok(heartbeats >= 1);
  assert.equal(jobs.subscribers(job.id), 0, 'the subscription ends with the stream');

  // A first connection can resume with ?lastEventId=; everything stored, 'end' included, then the stream closes.
  const resumed = dataOf(await readEventStream(await server.api(`/api/jobs/${job.id}/events?lastEventId=3`)));
  assert.deepEqual(resumed.map(([id]) => id), ['4', '5']);
  // Reconnecting after the end of a finished job: 204, which tells an EventSource to stop.
  jobs.jobs.get(job.id)!.status = 'SUCCESS';
  const finished = await server.api(`/api/jobs/${job.id}/events`, { headers: { authorization: `Bearer ${server.token}`, 'last-event-id': '6' } });
  assert.equal(finished.status, 204);
  const badId = await server.api(`/api/jobs/${job.id}/events`, { headers: { authorization: `Bearer ${server.token}`, 'last-event-id': 'x' } });
  assert.equal(badId.status, 400);
});

test('closing the server ends open event streams', async (t) => {
  const jobs = new MemoryJobs();
  const server = await startTestServer(t, { jobs });
  const job = await jobs.enqueue({ repo: 'web', branch: 'main', commit: 'c'.repeat(40), title: 't', author: 'a', trigger: 'manual' });
  jobs.publish(job.id, output('running'));
  const response = await server.api(`/api/jobs/${job.id}/events`);
  const reading = readEventStream(response, (message) => {
    if (message.data !== undefined) void server.app.close();
  });
  const messages = await reading;
  assert.equal(dataOf(messages).length, 1);
  assert.equal(jobs.subscribers(job.id), 0);
});
