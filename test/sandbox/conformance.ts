// Conformance suite for Sandbox implementations: every backend (runc today, a microVM later) must pass
// it. Tests need root; each starts its own machine(s) on its own rootfs copy and destroys them even
// when it fails.
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireRoot } from '../helpers/env.js';
import { exec } from '../../src/util/exec.js';
import { hasOwnUserNamespace } from '../../src/util/process.js';
import type { ExecRequest, Machine, MachineSpec, OutputChunk, Sandbox } from '../../src/sandbox/types.js';

export interface ConformanceOptions {
  name: string;
  /** A sandbox whose leftovers (and reapLeftovers) concern only this test process. Calls share state. */
  sandbox: () => Sandbox;
  /** A fresh writable Debian root directory, removed after the test. */
  makeRootfs: (t: TestContext) => Promise<string>;
  /** Backend-specific traces a destroyed machine must not leave (cgroups, helper processes, mounts). */
  leftovers: (machine: Machine) => Promise<string[]>;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
/** False for a pid that is gone or a zombie (a killed process may wait a while for its reaper). */
function isRunning(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}
const uniqueId = (label: string): string => `${label}-${randomBytes(3).toString('hex')}`;

export function runSandboxConformance(options: ConformanceOptions): void {
  async function startMachine(t: TestContext, spec: Partial<MachineSpec> = {}): Promise<Machine> {
    // Node 20 runs t.after hooks in the order they were registered: register the machine's destroy
    // before makeRootfs registers the rootfs cleanup, so the machine is gone before its root is.
    let machine: Machine | undefined;
    t.after(() => machine?.destroy());
    const rootfs = spec.rootfs ?? (await options.makeRootfs(t));
    machine = await options.sandbox().start({ id: uniqueId('m'), network: 'none', ...spec, rootfs });
    return machine;
  }

  /** Runs a command and returns its outcome with the whole stdout/stderr. */
  async function run(machine: Machine, command: string, request: Partial<ExecRequest> = {}) {
    let stdout = '';
    let stderr = '';
    const outcome = await machine.exec({
      command,
      ...request,
      onOutput: (chunk) => {
        if (chunk.stream === 'stdout') stdout += chunk.data.toString();
        else stderr += chunk.data.toString();
        request.onOutput?.(chunk);
      },
    });
    return { ...outcome, stdout, stderr };
  }

  const rootTest = (name: string, fn: (t: TestContext) => Promise<void>, timeout = 60_000) =>
    test(`${options.name}: ${name}`, { timeout }, async (t) => {
      if (!requireRoot(t)) return;
      await fn(t);
    });

  rootTest('exec returns the exit code as a value and streams output live with timestamps', async (t) => {
    const machine = await startMachine(t);
    const chunks: OutputChunk[] = [];
    const result = await run(machine, 'echo one; sleep 0.3; echo two >&2; exit 7', { onOutput: (c) => chunks.push(c) });
    assert.equal(result.exitCode, 7);
    assert.equal(result.signal, null);
    assert.equal(result.timedOut, false);
    assert.equal(result.stdout, 'one\n');
    assert.equal(result.stderr, 'two\n');
    const first = chunks.find((c) => c.data.toString().includes('one'));
    const second = chunks.find((c) => c.data.toString().includes('two'));
    assert.ok(first && second);
    assert.ok(second.timeMs - first.timeMs >= 250, `chunks arrive as written: ${first.timeMs} then ${second.timeMs}`);
    assert.ok(result.durationMs >= 300);
  });

  rootTest('no output is lost when the host is too busy to read it before the command exits', async (t) => {
    const machine = await startMachine(t);
    // runc copies the output through pipes of its own while the exit status comes straight from the
    // wrapper: with ~200 KB still in those pipes at the exit and every chunk blocking the event loop,
    // the status is read long before the last lines.
    const busy = (ms: number) => {
      const until = performance.now() + ms;
      while (performance.now() < until);
    };
    const line = 'x'.repeat(1000);
    const result = await run(machine, `for i in $(seq 1 400); do echo "$i ${line}"; done; echo "done" >&2; (sleep 0.3; echo late) &`, {
      onOutput: () => busy(100),
    });
    assert.equal(result.exitCode, 0);
    const lines = result.stdout.split('\n');
    assert.equal(lines.length, 401, 'every line written before the exit, and none of the daemon\'s later ones');
    assert.equal(lines[399], `400 ${line}`);
    assert.equal(result.stderr, 'done\n');
  });

  rootTest('a background command that fails at once: its whole output is forwarded before its end is reported', async (t) => {
    const machine = await startMachine(t);
    const busy = (ms: number) => {
      const until = performance.now() + ms;
      while (performance.now() < until);
    };
    const line = 'y'.repeat(1000);
    let received = '';
    const failing = await machine.startBackground({
      command: `for i in $(seq 1 200); do echo "$i ${line}"; done; echo "cannot bind port" >&2; exit 3`,
      onOutput: (c) => {
        received += c.data.toString();
        busy(50);
      },
    });
    const ended = await failing.exitedWithin(30_000);
    assert.equal(ended?.exitCode, 3);
    assert.match(received, /cannot bind port/, 'the reason is in the output when the end is reported');
    assert.ok(received.includes(`200 ${line}`));
  });

  rootTest('exec uses the given env, workdir and user (name or uid)', async (t) => {
    const machine = await startMachine(t);
    const root = await run(machine, 'echo "$GREETING|$PWD|$(id -u)|$HOME|$PATH"', {
      env: { GREETING: 'hello $world', PATH: '/usr/bin:/bin' },
      workdir: '/tmp',
    });
    assert.equal(root.stdout, 'hello $world|/tmp|0|/root|/usr/bin:/bin\n');
    const byName = await run(machine, 'id -un; id -u; echo $HOME', { user: 'nobody', workdir: '/' });
    assert.equal(byName.stdout, 'nobody\n65534\n/nonexistent\n');
    const byUid = await run(machine, 'id -un', { user: 65534, workdir: '/' });
    assert.equal(byUid.stdout, 'nobody\n');
    // Nothing carries over between execs: each is a fresh shell.
    await run(machine, 'export CARRY=1; cd /etc');
    assert.equal((await run(machine, 'echo "[$CARRY]"; pwd', { workdir: '/root' })).stdout, '[]\n/root\n');
    await assert.rejects(machine.exec({ command: 'true', user: 'no-such-user' }), /no-such-user/);
  });

  rootTest('a machine sees neither host files nor host processes, and has its own hostname', async (t) => {
    const markerDir = mkdtempSync(join(tmpdir(), 'strata-host-marker-'));
    t.after(() => rm(markerDir, { recursive: true, force: true }));
    const marker = join(markerDir, 'marker');
    writeFileSync(marker, 'host secret');
    const machine = await startMachine(t, { hostname: 'machine-one' });
    const result = await run(machine, `test -e ${marker} && echo visible; hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; test -d /proc/${process.pid} && echo host-pid-visible; ls /proc | grep -c '^[0-9]'`);
    const [hostname, init, count] = result.stdout.split('\n');
    assert.equal(hostname, 'machine-one', result.stdout);
    assert.doesNotMatch(result.stdout, /visible/);
    assert.doesNotMatch(init ?? '', /systemd|process_api|init$/);
    assert.ok(Number(count) < 10, `few processes inside: ${count}`);
    const hostHostname = (await exec('hostname', [])).stdout.trim();
    assert.notEqual(hostHostname, 'machine-one');
  });

  rootTest('/proc, read-only /sys, /dev devices and /tmp work', async (t) => {
    const machine = await startMachine(t);
    const script = [
      'set -e',
      'test -r /proc/self/status',
      'if touch /sys/strata-probe 2>/dev/null; then echo sys-writable; fi',
      'head -c 4 /dev/zero | od -An -tx1 | tr -d " \\n"; echo',
      'head -c 16 /dev/urandom | wc -c',
      'head -c 16 /dev/random | wc -c',
      'echo discard > /dev/null',
      'test -c /dev/tty && test -e /dev/ptmx && echo devices',
      'echo shm > /dev/shm/x && cat /dev/shm/x',
      'echo tmp > /tmp/x && cat /tmp/x',
    ].join('\n');
    const result = await run(machine, script);
    assert.equal(result.exitCode, 0, result.stderr);
    assert.equal(result.stdout, '00000000\n16\n16\ndevices\nshm\ntmp\n');
  });

  rootTest('a background process started by an exec survives later execs and freeze/thaw', async (t) => {
    const machine = await startMachine(t);
    // The second daemon keeps writing to the exec's stdout after the exec ended: it must not die of SIGPIPE.
    const started = await run(
      machine,
      'setsid bash -c "while :; do date +%s%N > /tmp/tick; sleep 0.05; done" & nohup sleep 4242 & setsid bash -c "while :; do echo chatter; sleep 0.05; done" & echo started',
      { timeoutMs: 10_000 },
    );
    assert.equal(started.exitCode, 0);
    assert.ok(started.durationMs < 2000, `the exec ends without waiting for its daemons (${started.durationMs} ms)`);
    const tick = () => readFileSync(join(machine.rootfs, 'tmp/tick'), 'utf8');
    await sleep(200);
    assert.equal((await run(machine, 'pgrep -c -f "slee[p] 4242"')).stdout, '1\n');

    await machine.freeze();
    await assert.rejects(machine.exec({ command: 'true' }), /frozen/);
    const frozenAt = tick();
    await sleep(300);
    assert.equal(tick(), frozenAt, 'nothing runs while frozen');
    await machine.thaw();
    await sleep(300);
    assert.notEqual(tick(), frozenAt, 'it runs again after thaw');
    // The loops are alive (not counted: for an instant after each fork, the child that will exec
    // `date` or `sleep` still has the loop's command line).
    const alive = (pattern: string) => `pgrep -f "${pattern}" >/dev/null && echo 1 || echo 0`;
    const after = await run(machine, `pgrep -c -f "slee[p] 4242"; ${alive('while :; do dat[e]')}; ${alive('echo chatte[r]')}`);
    assert.equal(after.stdout, '1\n1\n1\n');
  });

  rootTest('startBackground reports an early non-zero exit, and a long runner as still running', async (t) => {
    const machine = await startMachine(t);
    const output: string[] = [];
    const failing = await machine.startBackground({ command: 'echo starting; exit 3', onOutput: (c) => output.push(c.data.toString()) });
    const failed = await failing.exitedWithin(2000);
    assert.equal(failed?.exitCode, 3);
    assert.match(output.join(''), /starting/);

    const lines: string[] = [];
    const server = await machine.startBackground({
      command: 'for i in 1 2 3; do echo line$i; done; exec sleep 1000',
      workdir: '/tmp',
      onOutput: (c) => lines.push(c.data.toString()),
    });
    assert.ok(server.pid > 1);
    assert.equal(await server.exitedWithin(1500), undefined, 'still running');
    assert.match(lines.join(''), /line1\nline2\nline3\n/);
    assert.equal((await run(machine, 'pgrep -c -fx "sleep 1000"')).stdout.trim(), '1');
    await server.kill();
    const ended = await server.exited;
    assert.equal(ended.exitCode, null);
    assert.equal((await run(machine, 'pgrep -fx "sleep 1000" || echo none')).stdout, 'none\n');
  });

  rootTest('a timeout kills the whole process tree of that exec, not background processes of others', async (t) => {
    const machine = await startMachine(t);
    await run(machine, 'setsid sleep 3131 >/dev/null 2>&1 < /dev/null &');
    const timedOut = await run(machine, 'setsid sleep 5151 & (sleep 5252 &) ; sleep 5353; echo not reached', { timeoutMs: 500 });
    assert.equal(timedOut.timedOut, true);
    assert.equal(timedOut.exitCode, null);
    assert.equal(timedOut.signal, 'SIGKILL');
    assert.doesNotMatch(timedOut.stdout, /not reached/);
    assert.ok(timedOut.durationMs < 5000);
    const left = await run(machine, 'pgrep -a sleep | grep -o "sleep [0-9]*" | sort');
    assert.match(left.stdout, /sleep 3131/);
    assert.doesNotMatch(left.stdout, /sleep 5[123]5[123]/);
  });

  rootTest('an aborted exec is killed and reported as canceled', async (t) => {
    const machine = await startMachine(t);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 300);
    const result = await run(machine, 'sleep 6161 & sleep 6262', { signal: controller.signal });
    assert.equal(result.canceled, true);
    assert.equal(result.exitCode, null);
    assert.equal((await run(machine, 'pgrep -f "sleep 6[12]6[12]" || echo none')).stdout, 'none\n');
  });

  rootTest('the memory limit OOM-kills a hog and the outcome says so', async (t) => {
    const machine = await startMachine(t, { memoryBytes: 64 * 1024 * 1024 });
    const hog = await run(machine, `perl -e '$x = "x" x (300 * 1024 * 1024); print "survived\\n"'`, { timeoutMs: 30_000 });
    assert.notEqual(hog.exitCode, 0);
    assert.equal(hog.oomKilled, true);
    assert.doesNotMatch(hog.stdout, /survived/);
    const small = await run(machine, `perl -e '$x = "x" x (8 * 1024 * 1024); print "fine\\n"'`);
    assert.equal(small.stdout, 'fine\n');
    assert.equal(small.oomKilled, false);
  });

  rootTest('the pids limit bounds a fork bomb and the machine stays usable', async (t) => {
    const machine = await startMachine(t, { pidsLimit: 64 });
    const bomb = `perl -e 'my ($ok, $failed, @kids) = (0, 0); for (1..1000) { my $p = fork; if (!defined $p) { $failed++; next } if ($p == 0) { sleep 60; exit 0 } push @kids, $p; $ok++ } print "$ok $failed\\n"; kill "KILL", @kids; 1 while wait != -1'`;
    const result = await run(machine, bomb, { timeoutMs: 30_000 });
    assert.equal(result.exitCode, 0, result.stderr);
    const [forked, failed] = result.stdout.trim().split(' ').map(Number);
    assert.ok(forked !== undefined && forked < 64, `forks bounded by the limit: ${forked}`);
    assert.ok(failed !== undefined && failed > 900, `most forks failed: ${failed}`);
    assert.equal(result.pidsLimitHit, 64, 'the outcome names the limit the forks ran into');
    const calm = await run(machine, 'echo alive');
    assert.equal(calm.stdout, 'alive\n');
    assert.equal(calm.pidsLimitHit, null, 'an exec that forked within the limit reports none');
  });

  rootTest('a machine whose processes keep forking at the pids limit can still be frozen and thawed', async (t) => {
    const machine = await startMachine(t, { pidsLimit: 256 });
    // Detached: the bomb outlives its exec and keeps the machine at its limit.
    await run(machine, '(b() { b | b & }; b) >/dev/null 2>&1 & sleep 2; exit 0', { timeoutMs: 60_000 });
    for (let round = 0; round < 3; round++) {
      await machine.freeze();
      await machine.thaw();
    }
  });

  rootTest("network 'none' has only loopback", async (t) => {
    const machine = await startMachine(t, { network: 'none' });
    const result = await run(machine, 'ls /sys/class/net; getent hosts deb.debian.org || echo unresolved');
    assert.equal(result.stdout, 'lo\nunresolved\n');
  });

  rootTest('ports are private to each machine: two machines both listen on :8080', async (t) => {
    const [first, second] = await Promise.all([
      startMachine(t, { network: 'outbound' }),
      startMachine(t, { network: 'outbound' }),
    ]);
    const serve = (reply: string) =>
      `perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalPort => 8080, Listen => 5, ReuseAddr => 1) or die "bind: $!"; while ($c = $s->accept) { print $c "${reply}\\n"; close $c }'`;
    const ask =
      'for i in $(seq 50); do if exec 3<>/dev/tcp/127.0.0.1/8080; then cat <&3; exit 0; fi 2>/dev/null; sleep 0.1; done; exit 1';
    for (const [machine, reply] of [
      [first, 'from-first'],
      [second, 'from-second'],
    ] as const) {
      const server = await machine.startBackground({ command: serve(reply), workdir: '/' });
      assert.equal(await server.exitedWithin(300), undefined, `${reply} server keeps running (bound :8080)`);
    }
    assert.equal((await run(first, ask)).stdout, 'from-first\n');
    assert.equal((await run(second, ask)).stdout, 'from-second\n');
  });

  rootTest(
    'outbound network: apt-get update && apt-get install -y curl works inside',
    async (t) => {
      const machine = await startMachine(t, { network: 'outbound' });
      const result = await run(machine, 'apt-get update -q && apt-get install -y -q curl && curl --version | head -1', {
        env: { DEBIAN_FRONTEND: 'noninteractive', PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' },
        timeoutMs: 240_000,
      });
      assert.equal(result.exitCode, 0, result.stderr.slice(-2000));
      assert.match(result.stdout, /^curl \d/m);
    },
    300_000,
  );

  rootTest("mounts made in the machine's mount namespace (via machine.pid) are visible to its execs", async (t) => {
    const machine = await startMachine(t);
    // As the tracer does: a machine with a user namespace of its own (a system machine, whose idmapped
    // root the host's uid 0 could not write) is joined there too.
    const mounted = await exec('nsenter', [
      `--target=${machine.pid}`,
      ...(hasOwnUserNamespace(machine.pid) ? ['--user'] : []),
      '--mount',
      '--',
      '/bin/sh',
      '-c',
      'mkdir -p /strata-probe && mount -t tmpfs strata-probe /strata-probe && echo inside > /strata-probe/file',
    ]);
    assert.equal(mounted.exitCode, 0, mounted.stderr);
    assert.equal((await run(machine, 'cat /strata-probe/file; findmnt -n -o SOURCE /strata-probe')).stdout, 'inside\nstrata-probe\n');
    const hostMounts = readFileSync('/proc/mounts', 'utf8');
    assert.doesNotMatch(hostMounts, /strata-probe/, 'the mount stays inside the machine');
  });

  rootTest('spec.mounts: host directories at machine paths (created if missing, nested), writes reach the host, not the rootfs', async (t) => {
    const hostDirs = mkdtempSync(join(tmpdir(), 'strata-sandbox-mounts-'));
    t.after(() => rm(hostDirs, { recursive: true, force: true }));
    const outer = join(hostDirs, 'outer');
    const inner = join(hostDirs, 'inner');
    await exec('mkdir', ['-p', outer, inner]);
    writeFileSync(join(outer, 'kept'), 'from the host\n');
    const machine = await startMachine(t, { mounts: [{ source: outer, destination: '/var/cache/outer' }, { source: inner, destination: '/var/cache/outer/inner' }] });
    const result = await run(machine, 'cat /var/cache/outer/kept && echo written > /var/cache/outer/new && echo deeper > /var/cache/outer/inner/file');
    assert.equal(result.exitCode, 0, result.stderr);
    assert.equal(result.stdout, 'from the host\n');
    assert.equal(readFileSync(join(outer, 'new'), 'utf8'), 'written\n');
    assert.equal(readFileSync(join(inner, 'file'), 'utf8'), 'deeper\n');
    // The machine's root holds only the (empty) mountpoint: the content lives on the host side.
    const inRoot = await exec('find', [join(machine.rootfs, 'var/cache/outer')]);
    assert.equal(inRoot.stdout.trim(), join(machine.rootfs, 'var/cache/outer'));
    const invalid = options.sandbox().start({ id: uniqueId('m'), network: 'none', rootfs: machine.rootfs, mounts: [{ source: inner, destination: '/a/../../escape' }] });
    await assert.rejects(invalid, /invalid mount destination/);
  });

  rootTest('destroy kills everything and leaves nothing behind; it is idempotent', async (t) => {
    const machine = await startMachine(t, { network: 'outbound', memoryBytes: 128 * 1024 * 1024 });
    await run(machine, 'setsid sleep 7171 >/dev/null 2>&1 &');
    await machine.startBackground({ command: 'sleep 7272' });
    const initPid = machine.pid;
    await machine.destroy();
    await machine.destroy();
    assert.equal(isRunning(initPid), false, 'init is gone');
    const ps = await exec('ps', ['-eo', 'args']);
    assert.doesNotMatch(ps.stdout, /sleep 7[12]7[12]/);
    assert.deepEqual(await options.leftovers(machine), []);
  });

  rootTest('reapLeftovers removes machines abandoned by a crashed engine', async (t) => {
    const rootfs = await options.makeRootfs(t);
    const abandoned = await options.sandbox().start({ id: uniqueId('crashed'), rootfs, network: 'outbound' });
    t.after(() => abandoned.destroy());
    await abandoned.exec({ command: 'setsid sleep 8181 >/dev/null 2>&1 &' });
    // A new engine (a new Sandbox object) starts and reaps what the old one left.
    const report = await options.sandbox().reapLeftovers();
    assert.ok(report.machines.some((name) => name.endsWith(abandoned.id)), JSON.stringify(report));
    assert.equal(isRunning(abandoned.pid), false, 'init is gone');
    assert.doesNotMatch((await exec('ps', ['-eo', 'args'])).stdout, /sleep 8181/);
    assert.deepEqual(await options.leftovers(abandoned), []);
  });
}
