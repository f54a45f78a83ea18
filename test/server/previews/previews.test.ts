// Previews through the server: a real run with RUN BACKGROUND + EXPOSE WEBSITE, then
// /preview/<job>/<runner>/... woken on demand in a machine from the run's final snapshot, destroyed
// when idle and woken again; auth, the 404/410 answers, and strata's credentials never reach the machine.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PREVIEW_SANDBOX_POLICY, previewRoutes, previewUrl } from '../../../src/server/previews/routes.js';
import { createGitRepo, ROOT_RUNNER } from '../../helpers/engine.js';
import { requireRoot } from '../../helpers/env.js';
import { authorized, createHarness, eventually, jobFor } from './harness.js';

/** An HTTP/1.0 server (perl-base is in minbase, python is not) answering "<name> <path> cookie=<Cookie header>". */
const httpServer = `use IO::Socket::INET;
my ($port, $name) = @ARGV;
$| = 1;
my $server = IO::Socket::INET->new(LocalAddr => '0.0.0.0', LocalPort => $port, Listen => 20, ReuseAddr => 1) or die "bind $port: $!";
while (my $client = $server->accept) {
  my $request = <$client>;
  next unless defined $request;
  my ($path) = $request =~ m{^\\S+ (\\S+)};
  my $cookie = '';
  while (my $line = <$client>) { last if $line =~ /^\\r?\\n$/; $cookie = $1 if $line =~ /^cookie: *(.*?)\\r?$/i }
  my $body = "$name $path cookie=$cookie\\n";
  print $client "HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\nSet-Cookie: strata_session=stolen; Path=/\\r\\nSet-Cookie: site=1; Path=/\\r\\nContent-Length: " . length($body) . "\\r\\n\\r\\n$body";
  close $client;
}
`;

async function get(url: string, headers: Record<string, string> = authorized): Promise<{ status: number; body: string; headers: Headers }> {
  const answer = await fetch(url, { headers, redirect: 'manual' });
  return { status: answer.status, body: await answer.text(), headers: answer.headers };
}

test('previewUrl: the job, runner and EXPOSE WEBSITE prefix under the public URL', () => {
  assert.equal(previewUrl('https://ci.example/', 'job-1', 'main-layerfile'), 'https://ci.example/preview/job-1/main-layerfile/');
  assert.equal(previewUrl('https://ci.example', 'job-1', 'web', '/api/'), 'https://ci.example/preview/job-1/web/api/');
});

test('previews: woken on demand from the final snapshot, one machine for concurrent requests, destroyed when idle, woken again', { timeout: 240_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const harness = await createHarness(t, 1000);
  const repo = createGitRepo(t, {
    'server.pl': httpServer,
    Layerfile: [
      'FROM vm/debian:12',
      'COPY server.pl /app/',
      'RUN BACKGROUND perl /app/server.pl 8000 api',
      'RUN BACKGROUND perl /app/server.pl 9000 web',
      'EXPOSE WEBSITE localhost:8000 /api /',
      'EXPOSE WEBSITE localhost:9000',
      '',
    ].join('\n'),
  });
  const { result } = await harness.engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(result.status, 'success');
  // The same commit again: every step is cached, the run log has no snapshot for them; the preview
  // must still find the final state (through the run's chain).
  const { result: cached } = await harness.engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(cached.status, 'success');
  assert.equal(cached.stepsRan, 0);
  harness.jobs.set('job-ok', jobFor('job-ok', cached.runId, 'SUCCESS', [ROOT_RUNNER]));
  harness.jobs.set('job-failed', jobFor('job-failed', cached.runId, 'FAILURE', [ROOT_RUNNER]));
  const base = await harness.serve(previewRoutes);
  const preview = `${base}/preview/job-ok/${ROOT_RUNNER}`;

  // Two concurrent first requests: one machine serves both, each routed by its prefix.
  const [api, web] = await Promise.all([get(`${preview}/api/users?id=3`), get(`${preview}/about`)]);
  assert.equal(api.status, 200, api.body);
  assert.equal(api.body, 'api /users?id=3 cookie=\n');
  assert.equal(web.body, 'web /about cookie=\n');
  // The site runs sandboxed (an opaque origin): its scripts cannot use the visitor's session on /api.
  assert.equal(web.headers.get('content-security-policy'), PREVIEW_SANDBOX_POLICY);
  assert.equal(harness.machineStarts(), 1);
  assert.equal((await harness.leftovers('preview-')).activeSnapshots.length, 1);

  // Strata's session cookie and token stay with the server, both ways; the site's own cookies pass.
  const withCookies = await get(`${preview}/x`, { ...authorized, cookie: 'strata_session=secret; theirs=1' });
  assert.equal(withCookies.body, 'web /x cookie=theirs=1\n');
  assert.deepEqual(withCookies.headers.getSetCookie(), ['site=1; Path=/']);

  // The mount point without its slash redirects (relative links need it).
  const bare = await get(preview);
  assert.equal(bare.status, 308);
  assert.equal(bare.headers.get('location'), `/preview/job-ok/${ROOT_RUNNER}/`);

  // Idle for previewIdleMs: the machine and its clone are gone; the next request wakes it again.
  await eventually('the idle preview is destroyed', async () => {
    const left = await harness.leftovers('preview-');
    return left.containers.length === 0 && left.cgroups.length === 0 && left.activeSnapshots.length === 0;
  });
  assert.equal((await get(`${preview}/api/again`)).body, 'api /again cookie=\n');
  assert.equal(harness.machineStarts(), 2);

  // Private by default; public when the repository says so.
  const anonymous = await get(`${preview}/api/x`, {});
  assert.equal(anonymous.status, 401);
  assert.equal((JSON.parse(anonymous.body) as { error: { code: string } }).error.code, 'STRATA_UNAUTHORIZED');
  harness.repo.publicPreviews = true;
  assert.equal((await get(`${preview}/api/x`, {})).body, 'api /x cookie=\n');
  harness.repo.publicPreviews = false;

  // Unknown job, a job that did not succeed, an unknown runner: 404 with a clear message.
  const unknownJob = await get(`${base}/preview/job-nope/${ROOT_RUNNER}/`);
  assert.equal(unknownJob.status, 404);
  assert.match(unknownJob.body, /no job job-nope/);
  const failed = await get(`${base}/preview/job-failed/${ROOT_RUNNER}/`);
  assert.equal(failed.status, 404);
  assert.match(failed.body, /did not succeed \(FAILURE\)/);
  const unknownRunner = await get(`${base}/preview/job-ok/nope/`);
  assert.equal(unknownRunner.status, 404);
  assert.match(unknownRunner.body, /no runner \\"nope\\"/);

  // The final snapshot gone (retention): 410 saying so, once the idle machine went.
  await eventually('the idle preview is destroyed', async () => (await harness.leftovers('preview-')).activeSnapshots.length === 0);
  const snapshots = harness.engine.engine.deps.snapshots;
  for (const snapshot of await snapshots.list()) if (snapshot.kind === 'committed' && snapshot.id.startsWith(`${result.runId}.`)) await snapshots.remove(snapshot.id);
  const gone = await get(`${preview}/api/x`);
  assert.equal(gone.status, 410, gone.body);
  assert.match(gone.body, /no longer in the store/);
});
