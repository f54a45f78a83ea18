// Commit statuses against a small local node:http receiver: the URL, body and token of each post, their
// order, retries after a server error, and giving up without throwing.
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { createStatusPoster, forgeRepoPath } from '../../../src/server/statuses/poster.js';

interface Received {
  method: string;
  url: string;
  authorization: string | undefined;
  body: Record<string, unknown>;
}

async function receiver(t: TestContext, answer: (n: number) => number) {
  const received: Received[] = [];
  const server = createServer((request: IncomingMessage, response) => {
    let text = '';
    request.on('data', (chunk: Buffer) => (text += chunk.toString()));
    request.on('end', () => {
      received.push({ method: request.method ?? '', url: request.url ?? '', authorization: request.headers.authorization, body: JSON.parse(text) as Record<string, unknown> });
      response.writeHead(answer(received.length), { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { received, baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1` };
}

function recordingLog() {
  const warnings: string[] = [];
  return { warnings, log: { info: () => {}, error: () => {}, warn: (message: unknown) => void warnings.push(String(message)) } as never };
}

const repo = { name: 'app', url: 'https://git.example.com/team/app.git' };

test('posts each status in order to {base}/repos/{owner}/{repo}/statuses/{sha} with the token', async (t) => {
  const { received, baseUrl } = await receiver(t, () => 201);
  const { log, warnings } = recordingLog();
  const poster = createStatusPoster({ statusApi: { baseUrl, token: 't0ken' }, log });
  poster.post({ repo, sha: 'abc123', state: 'pending', context: 'strata', description: 'queued', targetUrl: 'http://strata.test/jobs/j1' });
  poster.post({ repo, sha: 'abc123', state: 'failure', context: 'strata/main-layerfile', description: 'x'.repeat(200), targetUrl: 'http://strata.test/jobs/j1' });
  poster.post({ repo, sha: 'abc123', state: 'success', context: 'strata', description: 'done', targetUrl: 'http://strata.test/jobs/j1' });
  await poster.flush();
  assert.deepEqual(warnings, []);
  assert.deepEqual(
    received.map((r) => [r.method, r.url, r.authorization, r.body.state, r.body.context]),
    [
      ['POST', '/api/v1/repos/team/app/statuses/abc123', 'token t0ken', 'pending', 'strata'],
      ['POST', '/api/v1/repos/team/app/statuses/abc123', 'token t0ken', 'failure', 'strata/main-layerfile'],
      ['POST', '/api/v1/repos/team/app/statuses/abc123', 'token t0ken', 'success', 'strata'],
    ],
  );
  assert.equal(received[0]?.body.target_url, 'http://strata.test/jobs/j1');
  assert.equal(received[0]?.body.description, 'queued');
  assert.equal(String(received[1]?.body.description).length, 140, 'descriptions are cut to what GitHub accepts');
});

test('a server error is retried; a status that never gets through is logged, not thrown', async (t) => {
  const flaky = await receiver(t, (n) => (n === 1 ? 502 : 201));
  const first = recordingLog();
  const poster = createStatusPoster({ statusApi: { baseUrl: flaky.baseUrl, token: 't' }, log: first.log, retryDelayMs: 10 });
  poster.post({ repo, sha: 's1', state: 'success', context: 'strata', description: 'ok', targetUrl: 'http://x' });
  await poster.flush();
  assert.equal(flaky.received.length, 2, 'one retry after the 502');
  assert.deepEqual(first.warnings, []);

  const down = await receiver(t, () => 500);
  const second = recordingLog();
  const failing = createStatusPoster({ statusApi: { baseUrl: down.baseUrl, token: 't' }, log: second.log, attempts: 3, retryDelayMs: 10 });
  failing.post({ repo, sha: 's2', state: 'error', context: 'strata', description: 'broken', targetUrl: 'http://x' });
  await failing.flush();
  assert.equal(down.received.length, 3);
  assert.equal(second.warnings.length, 1);
  assert.match(second.warnings[0] as string, /not posted: HTTP 500/);
});

test('owner/repo comes from the repo URL, else from the name', () => {
  assert.deepEqual(forgeRepoPath({ name: 'x', url: 'https://github.com/acme/widget.git' }), { owner: 'acme', name: 'widget' });
  assert.deepEqual(forgeRepoPath({ name: 'x', url: 'git@github.com:acme/widget.git' }), { owner: 'acme', name: 'widget' });
  assert.deepEqual(forgeRepoPath({ name: 'x', url: 'ssh://git@gitea.local:2222/acme/widget' }), { owner: 'acme', name: 'widget' });
  assert.deepEqual(forgeRepoPath({ name: 'widget', url: 'widget' }), { owner: 'widget', name: 'widget' });
});
