// The debug terminal through the server: a websocket into a shell on a real pty, in a throwaway machine
// cloned from a failed run's failure snapshot; resize reaches the pty; the exit code comes as the
// final frame; closing the socket destroys the machine and removes the clone; no auth, no terminal.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { terminalRoutes } from '../../../src/server/terminal/routes.js';
import { createGitRepo, ROOT_RUNNER } from '../../helpers/engine.js';
import { requireRoot } from '../../helpers/env.js';
import { authorized, createHarness, eventually, jobFor } from '../previews/harness.js';

/** The `ws` client (a dependency of @fastify/websocket; it has no type declarations here). */
interface Client {
  on(event: 'open' | 'close', listener: () => void): void;
  on(event: 'message', listener: (data: Buffer) => void): void;
  on(event: 'error', listener: (error: Error) => void): void;
  on(event: 'unexpected-response', listener: (request: unknown, response: { statusCode: number }) => void): void;
  send(data: string): void;
  close(): void;
}
const WebSocket = createRequire(import.meta.url)('ws') as new (url: string, options: { headers: Record<string, string> }) => Client;

interface Session {
  client: Client;
  output(): string;
  /** Resolves once the output matches `pattern`. */
  waitFor(pattern: RegExp, ms?: number): Promise<void>;
  closed: Promise<void>;
  exit(): unknown;
}

function connect(url: string, headers: Record<string, string>): Promise<Session> {
  return new Promise((resolve, reject) => {
    const client = new WebSocket(url, { headers });
    let output = '';
    let exit: unknown;
    const listeners = new Set<() => void>();
    const closed = new Promise<void>((done) => client.on('close', done));
    client.on('message', (data) => {
      const text = data.toString();
      if (text.startsWith('\u0000')) exit = JSON.parse(text.slice(1));
      else output += text;
      for (const listener of listeners) listener();
    });
    client.on('unexpected-response', (_request, response) => reject(new Error(`HTTP ${response.statusCode}`)));
    client.on('error', reject);
    client.on('open', () =>
      resolve({
        client,
        closed,
        output: () => output,
        exit: () => exit,
        waitFor: (pattern, ms = 60_000) =>
          new Promise((matched, failed) => {
            const check = (): void => {
              if (!pattern.test(output)) return;
              listeners.delete(check);
              clearTimeout(timer);
              matched();
            };
            const timer = setTimeout(() => {
              listeners.delete(check);
              failed(new Error(`no ${pattern} within ${ms} ms in:\n${output}`));
            }, ms);
            listeners.add(check);
            check();
          }),
      }),
    );
  });
}

test('debug terminal: a shell on a pty in a clone of the failure snapshot; resize, exit code, cleanup; auth', { timeout: 300_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const harness = await createHarness(t);
  const repo = createGitRepo(t, { Layerfile: 'FROM vm/debian:12\nRUN echo state-before-failure > /root/marker\nRUN touch /root/failed-here && false\n' });
  const { result } = await harness.engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(result.status, 'failure');
  harness.jobs.set('job-failed', jobFor('job-failed', result.runId, 'FAILURE', [ROOT_RUNNER]));
  const base = (await harness.serve(terminalRoutes)).replace(/^http/, 'ws');
  const url = `${base}/api/jobs/job-failed/runners/${ROOT_RUNNER}/terminal`;

  const session = await connect(`${url}?cols=100&rows=30`, authorized);
  const sessions = [session];
  t.after(() => sessions.forEach((s) => s.client.close()));
  // Typed before the shell runs: kept until it does.
  session.client.send(JSON.stringify({ type: 'input', data: 'stty size; echo ready\r' }));
  await session.waitFor(/30 100\s+ready/);
  session.client.send(JSON.stringify({ type: 'resize', cols: 132, rows: 40 }));
  // (`done-$((1+1))` prints done-2, which the echo of the typed line does not contain.)
  session.client.send(JSON.stringify({ type: 'input', data: 'stty size; ls /; cat /root/marker; ls /root; echo done-$((1+1))\r' }));
  await session.waitFor(/done-2/);
  assert.match(session.output(), /40 132/);
  assert.match(session.output(), /state-before-failure/);
  assert.match(session.output(), /\betc\b/);
  assert.match(session.output(), /failed-here/, 'the machine is the state the failed step left');
  assert.equal((await harness.leftovers('terminal-')).activeSnapshots.length, 1);

  // The shell's exit code is the last frame; then the socket closes and nothing is left.
  session.client.send(JSON.stringify({ type: 'input', data: 'exit 3\r' }));
  await session.closed;
  assert.deepEqual(session.exit(), { type: 'exit', code: 3 });
  await eventually('the terminal machine and clone are gone', async () => {
    const left = await harness.leftovers('terminal-');
    return left.containers.length === 0 && left.cgroups.length === 0 && left.activeSnapshots.length === 0;
  });

  // Closing the socket while the shell runs: the same cleanup; changes did not reach the snapshot.
  const second = await connect(url, authorized);
  sessions.push(second);
  second.client.send(JSON.stringify({ type: 'input', data: 'ls /root; touch /root/changed\r' }));
  await second.waitFor(/failed-here/);
  await eventually('the second machine runs', async () => (await harness.leftovers('terminal-')).containers.length === 1);
  second.client.close();
  await eventually('the terminal machine and clone are gone after the socket closed', async () => {
    const left = await harness.leftovers('terminal-');
    return left.containers.length === 0 && left.cgroups.length === 0 && left.activeSnapshots.length === 0;
  });
  const third = await connect(url, authorized);
  sessions.push(third);
  third.client.send(JSON.stringify({ type: 'input', data: 'ls /root; echo listed-$((1+1))\r' }));
  await third.waitFor(/listed-2/);
  assert.doesNotMatch(third.output(), /changed/, 'a new terminal starts from the snapshot again');
  third.client.close();

  // No auth: 401 before the upgrade; unknown job, runner: 404.
  await assert.rejects(connect(url, {}), /HTTP 401/);
  await assert.rejects(connect(`${base}/api/jobs/job-nope/runners/${ROOT_RUNNER}/terminal`, authorized), /HTTP 404/);
  await assert.rejects(connect(`${base}/api/jobs/job-failed/runners/nope/terminal`, authorized), /HTTP 404/);
  await eventually('every terminal machine is gone', async () => (await harness.leftovers('terminal-')).activeSnapshots.length === 0);
});
