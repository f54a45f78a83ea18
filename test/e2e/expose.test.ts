// EXPOSE WEBSITE / EXPOSE TCP through the CLI as a process: `strata run` succeeds, keeps the final
// state running in a machine, prints where it serves it, and serves until `strata stop`; then nothing
// of it may be left (machines, their state dirs and cgroups, active snapshots).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { routeRequest, type WebsiteRoute } from '../../src/engine/expose.js';
import { machineCgroupDirs } from '../../src/sandbox/runc/cgroups.js';
import { openBtrfsStore } from '../../src/snapshot/btrfs.js';
import { createGitRepo } from '../helpers/engine.js';
import { runStrata, startStrata, stopAfterTest, type StrataProcess } from '../helpers/cli.js';
import { requireRoot } from '../helpers/env.js';
import { PERL_HTTP_SERVER } from '../helpers/httpServer.js';
import { temporaryStore } from '../helpers/store.js';



/** A raw TCP server that writes one line to whoever connects. */
const tcpServer = `use IO::Socket::INET;
my $server = IO::Socket::INET->new(LocalAddr => '0.0.0.0', LocalPort => $ARGV[0], Listen => 5, ReuseAddr => 1) or die "bind: $!";
while (my $client = $server->accept) { print $client "hello over tcp\\n"; close $client }
`;

async function get(url: string): Promise<{ status: number; body: string }> {
  const answer = await fetch(url);
  return { status: answer.status, body: await answer.text() };
}

function readLine(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let data = '';
    socket.on('data', (d: Buffer) => (data += d.toString()));
    socket.on('error', reject);
    socket.on('close', () => resolve(data));
  });
}

/** Stops the serving run with `strata stop` and checks that it exits 0 and leaves nothing behind. */
async function stopAndCheckClean(store: string, serving: StrataProcess): Promise<void> {
  const stop = await runStrata(['stop', '--store', store]);
  assert.equal(stop.code, 0, stop.stderr);
  assert.equal(await serving.exited, 0, serving.stderr());
  assert.ok(!existsSync(join(store, 'expose.pid')), 'the pid file is removed');
  // The engine's machines are named after the store (compose.ts): their state root goes once they are all destroyed.
  const storeTag = createHash('sha256').update(store).digest('hex').slice(0, 8);
  assert.ok(!existsSync(join('/run/strata', storeTag)), 'no machine state left');
  assert.deepEqual(machineCgroupDirs((name) => name.startsWith(`strata-${storeTag}-`)), []);
  const snapshots = await openBtrfsStore({ root: join(store, 'snapshots') });
  try {
    assert.deepEqual((await snapshots.list()).filter((s) => s.kind === 'active').map((s) => s.id), []);
  } finally {
    await snapshots.close();
  }
  const again = await runStrata(['stop', '--store', store]);
  assert.notEqual(again.code, 0, 'nothing to stop any more');
  assert.match(again.stderr, /nothing is being served/);
}

test('routeRequest: longest whole-segment prefix wins; rewrite replaces the prefix; the query is kept', () => {
  const route = (prefix: string, rewrite: string | undefined, guestPort: number): WebsiteRoute => ({ runner: 'r', prefix, rewrite, scheme: 'http', guestPort, hostPort: guestPort });
  const routes = [route('/', undefined, 9000), route('/api', '/', 8000), route('/api/v2/', '/v2', 8002), route('/docs', undefined, 8080)];
  const at = (url: string) => {
    const match = routeRequest(routes, url);
    return match && `${match.route.guestPort} ${match.path}`;
  };
  assert.equal(at('/'), '9000 /');
  assert.equal(at('/about?x=1'), '9000 /about?x=1');
  assert.equal(at('/api'), '8000 /');
  assert.equal(at('/api/'), '8000 /');
  assert.equal(at('/api/users?id=3'), '8000 /users?id=3');
  assert.equal(at('/apix'), '9000 /apix');
  assert.equal(at('/api/v2/items'), '8002 /v2/items');
  assert.equal(at('/api/v2'), '8002 /v2');
  assert.equal(at('/docs/a'), '8080 /docs/a', 'without a rewrite the path is sent unchanged');
  assert.equal(routeRequest([route('/only', undefined, 1)], '/other'), undefined);
});

test('EXPOSE WEBSITE: `strata run` serves the final state at a printed URL until `strata stop`', { timeout: 600_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const serving = stopAfterTest(t);
  const store = await temporaryStore(t, 'strata-expose-');
  const repo = createGitRepo(t, {
    'server.pl': PERL_HTTP_SERVER,
    // The server only listens 3 s after its (re-)launch: the preview is printed once it answers.
    Layerfile: 'FROM vm/debian:12\nCOPY server.pl /app/\nRUN BACKGROUND sleep 3 && exec perl /app/server.pl 8000 one\nEXPOSE WEBSITE localhost:8000\n',
  });
  const strata = serving.track(startStrata(['run', '--plain', '--store', store, repo.dir]));
  const [, url, runner] = await strata.waitFor(/^preview: (http:\/\/127\.0\.0\.1:\d+\/) -> (\S+) localhost:8000$/m, 480_000);
  assert.equal(runner, 'main-layerfile');
  // The server was started by the run, then re-launched in the exposed machine: it answers there.
  assert.deepEqual(await get(`${url}hello/world?q=1`), { status: 200, body: 'one /hello/world?q=1\n' });
  assert.match(strata.stderr(), /serving until Ctrl-C or `strata stop`/);
  assert.doesNotMatch(strata.stderr(), /did not answer/);
  assert.ok(existsSync(join(store, 'expose.pid')));
  await stopAndCheckClean(store, strata);

  // --no-expose: the same (now cached) run ends at once, serving nothing.
  const plain = await runStrata(['run', '--plain', '--no-expose', '--store', store, repo.dir]);
  assert.equal(plain.code, 0, plain.stderr);
  assert.doesNotMatch(plain.stdout, /preview:/);
});

test('two EXPOSE WEBSITE lines route by prefix (with rewrite) and EXPOSE TCP forwards a raw port', { timeout: 600_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const serving = stopAfterTest(t);
  const store = await temporaryStore(t, 'strata-expose-');
  const repo = createGitRepo(t, {
    'server.pl': PERL_HTTP_SERVER,
    'tcp.pl': tcpServer,
    Layerfile: [
      'FROM vm/debian:12',
      'COPY server.pl tcp.pl /app/',
      'RUN BACKGROUND perl /app/server.pl 8000 api',
      'RUN BACKGROUND perl /app/server.pl 9000 web',
      'RUN BACKGROUND perl /app/tcp.pl 7000',
      'EXPOSE WEBSITE localhost:8000 /api /',
      'EXPOSE WEBSITE localhost:9000 /',
      'EXPOSE TCP :7000',
      '',
    ].join('\n'),
  });
  const strata = serving.track(startStrata(['run', '--plain', '--store', store, repo.dir]));
  const [, tcpPort] = await strata.waitFor(/^tcp: 127\.0\.0\.1:(\d+) -> main-layerfile :7000$/m, 480_000);
  const stdout = strata.stdout();
  const api = /^preview: (http:\/\/127\.0\.0\.1:(\d+)\/api\/) -> main-layerfile localhost:8000 \/$/m.exec(stdout);
  const web = /^preview: (http:\/\/127\.0\.0\.1:(\d+)\/) -> main-layerfile localhost:9000$/m.exec(stdout);
  assert.ok(api && web, stdout);
  assert.equal(api[2], web[2], 'one preview server for both lines');
  const base = web[1] as string;
  assert.deepEqual(await get(`${base}api/users?id=3`), { status: 200, body: 'api /users?id=3\n' });
  assert.deepEqual(await get(`${base}api`), { status: 200, body: 'api /\n' });
  assert.deepEqual(await get(`${base}apix`), { status: 200, body: 'web /apix\n' });
  assert.deepEqual(await get(`${base}about`), { status: 200, body: 'web /about\n' });
  assert.equal(await readLine(Number(tcpPort)), 'hello over tcp\n');
  await stopAndCheckClean(store, strata);
});
