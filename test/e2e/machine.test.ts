// The MACHINE issue's "Done when", literally: a real btrfs store and real runc machines. A machine runs
// three steps, one of which leaves an HTTP server running in the background; the machine is snapshotted
// after each step (freeze, commit, thaw) and keeps serving. The last snapshot is cloned twice; each clone
// gets a machine of its own in which the recorded background command is re-launched (ARCHITECTURE
// decision 3), both serve on the same port, and their files are independent. Then everything is torn
// down and nothing may be left: mounts, loop device, processes, runc state, cgroups, slirp4netns, dirs.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureImage } from '../../src/images/ensure.js';
import { createRuncSandbox } from '../../src/sandbox/runc/index.js';
import { machineCgroupDirs } from '../../src/sandbox/runc/cgroups.js';
import type { BackgroundProcess, BackgroundRequest, Machine } from '../../src/sandbox/types.js';
import { openBtrfsStore } from '../../src/snapshot/btrfs.js';
import { snapshotKey, snapshotName, type SnapshotKey, type SnapshotName, type SnapshotStore } from '../../src/snapshot/types.js';
import { exec } from '../../src/util/exec.js';
import { requireRoot } from '../helpers/env.js';

const PORT = 8080;

/**
 * The recorded RUN BACKGROUND step: an HTTP/1.0 server in perl (perl-base is in minbase, python is not)
 * whose body is fixed at start: the greeting file an earlier step wrote in its workdir, and the
 * machine's hostname (so a reply proves which machine answered). Env and workdir matter: a re-launch
 * that lost them would read another file or bind another port.
 */
const serverStep: Omit<BackgroundRequest, 'onOutput'> = {
  command: `exec perl -MIO::Socket::INET -e '
    $| = 1;
    open(my $f, "<", "greeting.txt") or die "greeting.txt: $!"; my $greeting = <$f>; chomp $greeting;
    chomp(my $host = qx(hostname));
    my $body = "greeting=$greeting\\nhost=$host\\n";
    my $server = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $ENV{PORT}, Listen => 5, ReuseAddr => 1) or die "bind: $!";
    print "listening on $ENV{PORT}\\n";
    while (my $client = $server->accept) {
      while (my $line = <$client>) { last if $line =~ /^\\r?\\n$/ }
      print $client "HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\nContent-Length: " . length($body) . "\\r\\n\\r\\n$body";
      close $client;
    }'`,
  env: { PORT: String(PORT), PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' },
  workdir: '/srv/app',
};

/** An HTTP GET from inside the machine (in a subshell) with bash's /dev/tcp, retried while the server starts (~5 s). */
const httpGet = (attempts: number) =>
  `(for i in $(seq ${attempts}); do
     if exec 3<>/dev/tcp/127.0.0.1/${PORT}; then printf "GET / HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n" >&3; cat <&3; exit 0; fi 2>/dev/null
     sleep 0.1
   done
   echo "nothing answers on :${PORT}" >&2; exit 1)`;

const expectedReply = (host: string) =>
  `HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${`greeting=hello from step 1\nhost=${host}\n`.length}\r\n\r\ngreeting=hello from step 1\nhost=${host}\n`;

async function run(machine: Machine, command: string): Promise<{ exitCode: number | null; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const outcome = await machine.exec({
    command,
    timeoutMs: 60_000,
    onOutput: (chunk) => {
      if (chunk.stream === 'stdout') stdout += chunk.data.toString();
      else stderr += chunk.data.toString();
    },
  });
  return { exitCode: outcome.exitCode, stdout, stderr };
}

/** Runs a step and asserts it succeeded. */
async function step(machine: Machine, command: string): Promise<string> {
  const result = await run(machine, command);
  assert.equal(result.exitCode, 0, `${command}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
  return result.stdout;
}

/** The engine's snapshot after a step: a consistent point of the running machine. */
async function snapshotAfterStep(store: SnapshotStore, machine: Machine, key: SnapshotKey, name: SnapshotName): Promise<void> {
  await machine.freeze();
  try {
    await store.commit(key, name);
  } finally {
    await machine.thaw();
  }
}

/** Starts the recorded background command and checks it is still up after RUN BACKGROUND's ~2 s window. */
async function startServer(machine: Machine, log: string[]): Promise<BackgroundProcess> {
  const server = await machine.startBackground({ ...serverStep, onOutput: (chunk) => log.push(chunk.data.toString()) });
  const early = await server.exitedWithin(2000);
  assert.equal(early, undefined, `the server exited early (${JSON.stringify(early)}): ${log.join('')}`);
  return server;
}

/** Everything on the host that could outlive a machine or the store, as comparable lines. */
async function hostTraces(scope: { dir: string; prefix: string; stateRoot: string; machinePids: number[] }): Promise<string[]> {
  const found: string[] = [];
  for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) if (line.includes(scope.dir)) found.push(`mount ${line}`);
  for (const line of (await exec('losetup', ['--all'])).stdout.split('\n')) if (line.includes(scope.dir)) found.push(`loop ${line}`);
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let cgroups = '';
    let args = '';
    try {
      // A zombie is dead already: killed machine processes wait a moment for the host's init to reap them.
      if (/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${entry}/stat`, 'utf8'))) continue;
      cgroups = readFileSync(`/proc/${entry}/cgroup`, 'utf8');
      args = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ').trim();
    } catch {
      continue; // exited meanwhile
    }
    // A process in one of our machines' cgroups is a machine process; slirp4netns names its target pid.
    if (cgroups.includes(`/${scope.prefix}`)) found.push(`machine process ${entry}: ${args}`);
    if (args.startsWith('slirp4netns') && scope.machinePids.some((pid) => args.split(' ').includes(String(pid)))) {
      found.push(`slirp4netns ${entry}: ${args}`);
    }
    if (args.includes(scope.prefix)) found.push(`process ${entry}: ${args}`);
  }
  if (existsSync(scope.stateRoot)) {
    const listed = await exec('runc', ['--root', join(scope.stateRoot, 'runc'), 'list', '--quiet']);
    for (const name of listed.stdout.split('\n')) if (name.trim() !== '') found.push(`runc container ${name}`);
  }
  found.push(...machineCgroupDirs((name) => name.startsWith(scope.prefix)).map((dir) => `cgroup ${dir}`));
  return found.sort();
}

test(
  'machine: steps, a background server across snapshots, two clones serving on the same port, nothing left behind',
  { timeout: 600_000 },
  async (t: TestContext) => {
    if (!requireRoot(t)) return;
    const dir = mkdtempSync(join(tmpdir(), 'strata-e2e-machine-'));
    const stateRoot = mkdtempSync(join(tmpdir(), 'strata-e2e-machine-state-'));
    const prefix = `strata-e2e${process.pid}-`;
    const machinePids: number[] = [];
    const scope = { dir, prefix, stateRoot, machinePids };
    const before = await hostTraces(scope);

    const sandbox = createRuncSandbox({ prefix, stateRoot });
    const machines: Machine[] = [];
    const snapshots: (SnapshotKey | SnapshotName)[] = [];
    let store: SnapshotStore | undefined;
    // One teardown, in dependency order (machines, snapshots, store, dirs), each part attempted even when
    // an earlier one failed. The test calls it and then checks the host; t.after repeats it (idempotent)
    // when the test failed half-way.
    const teardown = async (): Promise<void> => {
      const failures: unknown[] = [];
      const attempt = async (part: () => Promise<unknown>): Promise<void> => {
        await part().catch((error: unknown) => failures.push(error));
      };
      for (const machine of machines) await attempt(() => machine.destroy());
      await attempt(() => sandbox.reapLeftovers());
      for (const id of [...snapshots].reverse()) await attempt(async () => store && (await store.has(id)) && store.remove(id));
      await attempt(async () => store?.close());
      await attempt(() => rm(dir, { recursive: true, force: true }));
      await attempt(() => rm(stateRoot, { recursive: true, force: true }));
      if (failures.length > 0) throw new AggregateError(failures, 'teardown failed');
    };
    t.after(teardown);

    const startMachine = async (id: string, rootfs: string): Promise<Machine> => {
      const machine = await sandbox.start({ id, rootfs, network: 'outbound', memoryBytes: 512 * 1024 ** 2 });
      machines.push(machine);
      machinePids.push(machine.pid);
      return machine;
    };
    store = await openBtrfsStore({ root: join(dir, 'store') });

    // A machine on a writable snapshot of the base image.
    const image = await ensureImage(store, 'vm/debian:12');
    const activeKey = snapshotKey('runner');
    snapshots.push(activeKey);
    const { path: rootfs } = await store.prepare(activeKey, image.snapshot);
    const machine = await startMachine('runner', rootfs);
    const committed = [1, 2, 3].map((n) => snapshotName(`runner.step-${n}`));
    snapshots.push(...committed);
    const [afterStep1, afterStep2, afterStep3] = committed as [SnapshotName, SnapshotName, SnapshotName];

    // Step 1 writes the file the server will serve.
    await step(machine, 'mkdir -p /srv/app && echo "hello from step 1" > /srv/app/greeting.txt');
    await snapshotAfterStep(store, machine, activeKey, afterStep1);

    // Step 2: RUN BACKGROUND the server.
    const serverLog: string[] = [];
    await startServer(machine, serverLog);
    assert.equal(await step(machine, httpGet(50)), expectedReply('runner'));
    await snapshotAfterStep(store, machine, activeKey, afterStep2);

    // Step 3, after a snapshot taken while the server ran: the server still answers, in this exec too.
    assert.equal(
      await step(machine, `${httpGet(50)} > /srv/app/reply.txt && echo "written by step 3" > /srv/app/step3.txt && cat /srv/app/reply.txt`),
      expectedReply('runner'),
    );
    await snapshotAfterStep(store, machine, activeKey, afterStep3);
    assert.equal(await step(machine, httpGet(1)), expectedReply('runner'), 'still serving in the exec after the last snapshot');
    assert.match(serverLog.join(''), /listening on 8080/);

    // The committed snapshots hold the state of their step: read-only, the server's reply only in step 3's.
    assert.equal(readFileSync(join(store.path(afterStep1), 'srv/app/greeting.txt'), 'utf8'), 'hello from step 1\n');
    assert.equal(existsSync(join(store.path(afterStep2), 'srv/app/step3.txt')), false);
    assert.equal(readFileSync(join(store.path(afterStep3), 'srv/app/reply.txt'), 'utf8'), expectedReply('runner'));

    // Two writable clones of the last snapshot, each with a machine of its own (the first keeps running).
    const cloneKeys = [snapshotKey('clone-a'), snapshotKey('clone-b')] as const;
    snapshots.push(...cloneKeys);
    const clones: Machine[] = [];
    for (const key of cloneKeys) {
      const { path } = await store.clone(afterStep3, key);
      clones.push(await startMachine(key, path));
    }
    const [cloneA, cloneB] = clones as [Machine, Machine];
    for (const clone of clones) {
      assert.equal(await step(clone, 'cat /srv/app/step3.txt'), 'written by step 3\n', 'the clone has the files of the last step');
      // Processes are not in a snapshot: nothing serves until the recorded command is re-launched.
      const unserved = await run(clone, httpGet(1));
      assert.equal(unserved.exitCode, 1, `a fresh clone serves nothing yet: ${unserved.stdout}`);
    }
    const cloneLogs: string[][] = [[], []];
    await startServer(cloneA, cloneLogs[0] ?? []);
    await startServer(cloneB, cloneLogs[1] ?? []);
    // Same port in three machines at once; each reply names the machine that answered.
    assert.equal(await step(cloneA, httpGet(50)), expectedReply('clone-a'));
    assert.equal(await step(cloneB, httpGet(50)), expectedReply('clone-b'));
    assert.equal(await step(machine, httpGet(1)), expectedReply('runner'));

    // Files written in one clone are not visible in the other, nor in the snapshot they came from.
    await step(cloneA, 'echo "only in a" > /srv/app/only-a.txt && sync');
    assert.equal(await step(cloneA, 'cat /srv/app/only-a.txt'), 'only in a\n');
    assert.equal(await step(cloneB, 'test -e /srv/app/only-a.txt && echo visible || echo absent'), 'absent\n');
    assert.equal(existsSync(join(store.path(afterStep3), 'srv/app/only-a.txt')), false);
    await step(cloneB, 'rm /srv/app/greeting.txt');
    assert.equal(await step(cloneA, 'cat /srv/app/greeting.txt'), 'hello from step 1\n', 'a deletion in b does not reach a');

    // The leftover check sees what it looks for while it is there.
    const running = await hostTraces(scope);
    for (const kind of ['mount', 'loop', 'machine process', 'slirp4netns', 'runc container', 'cgroup']) {
      assert.ok(running.some((line) => line.startsWith(`${kind} `)), `${kind} is visible while running:\n${running.join('\n')}`);
    }

    // Tear everything down step by step, then look for what could have been left.
    for (const each of machines) await each.destroy();
    for (const id of [...snapshots].reverse()) await store.remove(id);
    assert.deepEqual((await store.list()).map((s) => s.id), [image.snapshot], 'only the base image remains');
    await store.close();
    assert.deepEqual(readdirSync(join(stateRoot, 'machines')), [], 'no machine state dirs');
    assert.deepEqual(await hostTraces(scope), before, 'nothing of the machines or the store is left on the host');
    await teardown(); // removes the directories; everything else is done already
    assert.deepEqual(await hostTraces(scope), before, 'nothing of the machines or the store is left on the host');
    assert.equal(existsSync(dir), false);
    assert.equal(existsSync(stateRoot), false);
  },
);
