// RUN BACKGROUND end to end (real git repos, machines, snapshots, tracing): a background process runs
// on between steps; a restore (or a child Layerfile) re-launches the recorded commands before its
// first step, and what the processes read is attributed to the steps during which they read it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { openDatabase } from '../../src/store/database.js';
import type { StepTrace } from '../../src/trace/types.js';
import { requireRoot } from '../helpers/env.js';
import { createGitRepo, createTestEngine, type TestEngine } from '../helpers/engine.js';
import { postgresMigrate, POSTGRES_BACKGROUND, POSTGRES_INSTALL } from '../helpers/postgres.js';

const ROOT = 'main-layerfile';
type Run = Awaited<ReturnType<TestEngine['run']>>;

/** The runner's plan summary as the run log recorded it (what the terminal shows first). */
async function planOf(engine: TestEngine, run: Run, runner = ROOT): Promise<string> {
  return (await engine.engine.deps.runLog.getRun(run.result.runId))?.runners.find((r) => r.runner === runner)?.plan ?? '';
}

function messages(run: Run): string {
  return [...run.result.outcomes.values()].map((o) => o.message ?? '').join('; ');
}

/** The trace the cache index recorded for `step` of the run's chain. */
async function recordedTrace(engine: TestEngine, run: Run, step: number, runner = ROOT): Promise<StepTrace> {
  const database = await openDatabase(join(engine.store, 'strata.db'));
  try {
    const row = database.raw
      .prepare<[string, string, number], { trace: string }>('SELECT s.trace FROM chain_steps s JOIN chains c ON c.id = s.chain_id WHERE c.run_id = ? AND c.runner = ? AND s.idx = ?')
      .get(run.result.runId, runner, step);
    assert.ok(row, `no index row for step ${step + 1} of ${run.result.runId}`);
    return JSON.parse(row.trace) as StepTrace;
  } finally {
    await database.close();
  }
}

// A one-connection-at-a-time HTTP-ish server in perl (perl-base is in minbase; python is not): it reads
// greeting.txt once at start and page.txt on every request, and answers with both.
const SERVER =
  `perl -MIO::Socket::INET -e 'open(my $g, "<", "/root/app/greeting.txt") or die "greeting: $!"; my $greeting = <$g>; ` +
  `my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 8080, Listen => 5, ReuseAddr => 1) or die "listen: $!"; ` +
  `while (my $c = $s->accept) { open(my $f, "<", "/root/app/page.txt") or die "page: $!"; print $c $greeting, <$f>; close $c }'`;
const FETCH = 'exec 3<>/dev/tcp/127.0.0.1/8080 && cat <&3';

test('a background server keeps serving later steps, and a restore re-launches it', { timeout: 600_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const repo = createGitRepo(t, {
    Layerfile: `FROM vm/debian:12\nCOPY . /root/app\nRUN BACKGROUND ${SERVER}\nRUN ${FETCH}\nRUN cat /root/app/last.txt && ${FETCH}\n`,
    'greeting.txt': 'hello\n',
    'page.txt': 'page v1\n',
    'last.txt': 'last v1\n',
  });

  const first = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(first.result.status, 'success', messages(first));
  assert.deepEqual(first.ran, [`${ROOT}#0`, `${ROOT}#1`, `${ROOT}#2`, `${ROOT}#3`]);
  assert.equal(first.output.get(`${ROOT}#2`), 'hello\npage v1\n', 'a later step reaches the server');
  assert.equal(first.output.get(`${ROOT}#3`), 'last v1\nhello\npage v1\n');
  assert.doesNotMatch(await planOf(engine, first), /re-launched/);

  // Only the last step read last.txt: restore after step 3, where the server ran, so start it again.
  repo.commit('edit last.txt', { 'last.txt': 'last v2\n' });
  const second = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(second.result.status, 'success', messages(second));
  assert.deepEqual(second.ran, [`${ROOT}#3`]);
  assert.equal(second.output.get(`${ROOT}#3`), 'last v2\nhello\npage v1\n', 'the re-launched server answers the rerun step');
  assert.match(await planOf(engine, second), /restoring after step 3, rerunning from step 4, re-launched 1 background process$/);
  // The re-launched server read greeting.txt before step 4 began: that read is recorded as step 4's.
  const recorded = await recordedTrace(engine, second, 3);
  assert.ok(recorded.read.includes('/root/app/greeting.txt'), `step 4's trace: ${JSON.stringify(recorded)}`);
  assert.ok(recorded.read.includes('/root/app/last.txt'));

  // page.txt is read by the server while answering step 3's request: that step reruns (and step 4).
  repo.commit('edit page.txt', { 'page.txt': 'page v2\n' });
  const third = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(third.result.status, 'success', messages(third));
  assert.deepEqual(third.ran, [`${ROOT}#2`, `${ROOT}#3`]);
  assert.equal(third.output.get(`${ROOT}#2`), 'hello\npage v2\n');
  assert.match(await planOf(engine, third), /restoring after step 2, .*re-launched 1 background process/);

  // greeting.txt is read when the server starts, inside the RUN BACKGROUND step's window.
  repo.commit('edit greeting.txt', { 'greeting.txt': 'bonjour\n' });
  const fourth = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(fourth.result.status, 'success', messages(fourth));
  assert.deepEqual(fourth.ran, [`${ROOT}#1`, `${ROOT}#2`, `${ROOT}#3`]);
  assert.equal(fourth.output.get(`${ROOT}#3`), 'last v2\nbonjour\npage v2\n');
  assert.doesNotMatch(await planOf(engine, fourth), /re-launched/, 'the restore point (after the COPY) had no background process');
});

test('a background command that exits non-zero within 2 s fails its step; exiting 0 is fine', { timeout: 300_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const repo = createGitRepo(t, {
    Layerfile: 'FROM vm/debian:12\nRUN BACKGROUND true\nRUN BACKGROUND echo broken >&2; exit 3\nRUN echo never\n',
  });
  const run = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(run.result.status, 'failure');
  assert.deepEqual(run.ran, [`${ROOT}#0`, `${ROOT}#1`], 'a daemon-like exit 0 passes; the failing step stops the run');
  assert.deepEqual(run.steps.map((s) => [s.step, s.status]), [[0, 'done'], [1, 'failed']]);
  assert.match(messages(run), /^step 2 \(line 3\) background command exited with code 3 within 2 s; the machine at failure is snapshot /);
  assert.match(run.output.get(`${ROOT}#1`) ?? '', /broken/, "the command's output is in its step's log");
});

test('a restore whose background command cannot start again fails the runner clearly', { timeout: 300_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const once = 'if [ -e /root/started ]; then echo refusing to start twice >&2; exit 2; fi; touch /root/started; exec sleep 1000';
  const repo = createGitRepo(t, {
    Layerfile: `FROM vm/debian:12\nCOPY x.txt /root/app/x.txt\nRUN BACKGROUND ${once}\nRUN cat /root/app/x.txt\n`,
    'x.txt': 'x v1\n',
  });
  const first = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(first.result.status, 'success', messages(first));
  repo.commit('edit x.txt', { 'x.txt': 'x v2\n' });
  const second = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(second.result.status, 'error');
  // The re-launch is checked alongside the first step (a restored service is used as soon as it is
  // up): that step may run, but the runner fails, and never succeeds on the broken re-launch.
  assert.match(messages(second), /re-launching background command `if \[ -e \/root\/started \].*` failed: it exited with code 2 within 2 s/);
  assert.match(second.output.get(`${ROOT}#2`) ?? '', /refusing to start twice/, 'its output goes to the first step that would have run');
  const third = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(third.result.status, 'error', 'the next run of the same commit fails the same way');
  assert.match(messages(third), /re-launching background command/);
});

test('a child Layerfile starts with its parent\'s background processes running again', { timeout: 300_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const server = `perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 8080, Listen => 5, ReuseAddr => 1) or die; while ($c = $s->accept) { print $c "from the parent\\n"; close $c }'`;
  const repo = createGitRepo(t, {
    'base/Layerfile': `FROM vm/debian:12\nLABEL display_name=base\nRUN BACKGROUND ${server}\nRUN ${FETCH}\n`,
    'child/Layerfile': `FROM ../base\nLABEL display_name=child\nCOPY ask.sh /root/c/ask.sh\nRUN bash /root/c/ask.sh\n`,
    'child/ask.sh': `echo asking; ${FETCH}\n`,
  });
  const first = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(first.result.status, 'success', messages(first));
  assert.deepEqual(first.ran, ['base#0', 'base#1', 'child#0', 'child#1']);
  assert.equal(first.output.get('child#1'), 'asking\nfrom the parent\n');
  assert.match(await planOf(engine, first, 'child'), /running all 2 step\(s\), re-launched 1 background process/);

  repo.commit('edit ask.sh', { 'child/ask.sh': `echo asking again; ${FETCH}\n` });
  const second = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(second.result.status, 'success', messages(second));
  assert.deepEqual(second.ran, ['child#1'], 'the parent reruns nothing');
  assert.equal(second.output.get('child#1'), 'asking again\nfrom the parent\n');
  assert.match(await planOf(engine, second, 'child'), /re-launched 1 background process/);
});

// The case: a base Layerfile installs Postgres, runs it in the background and migrates; a child
// queries it. Changing what only the child reads reruns only the child's query, against a re-launched
// Postgres that recovers the migrated database from the (crash-consistent) snapshot. Downloads
// Postgres from Debian's archive (~1 min).
test('Postgres started by RUN BACKGROUND in a base Layerfile serves its migrated data to a child, across restores', { timeout: 900_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const repo = createGitRepo(t, {
    'base/Layerfile': [
      'FROM vm/debian:12',
      'LABEL display_name=base',
      POSTGRES_INSTALL,
      POSTGRES_BACKGROUND,
      'COPY migrate.sql /root/db/migrate.sql',
      postgresMigrate('/root/db/migrate.sql'),
      '',
    ].join('\n'),
    'base/migrate.sql': "CREATE TABLE greetings (text text);\nINSERT INTO greetings VALUES ('migrated row');\n",
    'child/Layerfile': [
      'FROM ../base',
      'LABEL display_name=child',
      'COPY query.sql /root/q/query.sql',
      'RUN until pg_isready -q -U postgres; do sleep 0.2; done && cd / && su postgres -c "psql -tA -v ON_ERROR_STOP=1" < /root/q/query.sql',
      '',
    ].join('\n'),
    'child/query.sql': 'SELECT text FROM greetings;\n',
  });

  const first = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(first.result.status, 'success', messages(first));
  assert.deepEqual(first.ran, ['base#0', 'base#1', 'base#2', 'base#3', 'child#0', 'child#1']);
  assert.equal(first.output.get('base#3'), 'migrated\n');
  assert.equal(first.output.get('child#1'), 'migrated row\n', 'the child reaches the parent\'s database, re-launched');
  assert.match(await planOf(engine, first, 'child'), /re-launched 1 background process/);

  repo.commit('edit the query', { 'child/query.sql': "SELECT text || ' (asked again)' FROM greetings;\n" });
  const second = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(second.result.status, 'success', messages(second));
  assert.deepEqual(second.ran, ['child#1'], 'neither the install nor the migration reruns');
  // The re-launched server's log goes to the first step that runs, here the query step itself.
  const log = second.output.get('child#1') ?? '';
  assert.match(log, /automatic recovery in progress[^]*ready to accept connections/, 'Postgres recovered the snapshot it was re-launched on');
  assert.deepEqual(log.split('\n').filter((line) => line.startsWith('migrated row')), ['migrated row (asked again)']);
  assert.match(await planOf(engine, second, 'child'), /restoring after step 1, rerunning from step 2, re-launched 1 background process/);
});

for (const [kind, wrap] of [
  ['runs in the foreground', (server: string) => server],
  ['forks and exits 0 at once', (server: string) => `(${server}) >/dev/null 2>&1 &`],
] as const) {
  test(`after a restore, the first step runs once the re-launched service listens again (its wait step is cached; the command ${kind})`, { timeout: 300_000 }, async (t) => {
    if (!requireRoot(t)) return;
    const engine = await createTestEngine(t);
    // The server takes a second to listen; the first run's wait loop (step 2) is cached on the next run,
    // and step 3 connects once, without retrying: it only works if the engine waited for port 8080.
    const slowServer = wrap(`sleep 1; exec perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 8080, Listen => 5, ReuseAddr => 1) or die; while ($c = $s->accept) { print $c "up\\n"; close $c }'`);
    const repo = createGitRepo(t, {
      Layerfile: `FROM vm/debian:12\nCOPY . /root/app\nRUN BACKGROUND ${slowServer}\nRUN until (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null; do sleep 0.1; done\nRUN cat /root/app/x.txt && ${FETCH}\n`,
      'x.txt': 'x v1\n',
    });
    const first = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
    assert.equal(first.result.status, 'success', messages(first));
    repo.commit('edit x', { 'x.txt': 'x v2\n' });
    const second = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
    assert.equal(second.result.status, 'success', messages(second));
    assert.deepEqual(second.ran, [`${ROOT}#3`], 'restored after the (cached) wait step');
    assert.equal(second.output.get(`${ROOT}#3`), 'x v2\nup\n');
  });
}
