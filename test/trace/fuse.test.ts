// The FUSE tracer against real programs: each test mounts strata-tracefs over its own temp dir,
// runs shell commands through the mount, and checks what each step's trace recorded. Needs root.
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireRoot } from '../helpers/env.js';
import { exec } from '../../src/util/exec.js';
import { attachFuse, createFuseRecorder, isTracefsMounted } from '../../src/trace/fuse.js';
import type { FuseTraceSession } from '../../src/trace/fuse.js';
import type { StepTrace } from '../../src/trace/types.js';
import { isStrataError } from '../../src/errors.js';

const prefix = '/root/app';

interface Mounted {
  dir: string;
  session: FuseTraceSession;
  /** Runs a shell command (cwd = the mounted dir) and fails the test if it fails. */
  sh(script: string): Promise<string>;
  /** One whole step: begin, run the script, end. */
  step(n: number, script: string): Promise<StepTrace>;
}

/** Mounts the tracer over a fresh temp dir filled by `populate`; always unmounts and cleans up. */
async function mountTraced(t: TestContext, populate: (dir: string) => void = () => {}): Promise<Mounted> {
  const base = mkdtempSync(join(tmpdir(), 'strata-trace-'));
  const dir = join(base, 'app');
  mkdirSync(dir);
  populate(dir);
  t.after(async () => {
    await session?.detach();
    if (isTracefsMounted(dir)) await exec('umount', ['-l', dir]);
    const leftover = readFileSync('/proc/mounts', 'utf8').includes(base);
    rmSync(base, { recursive: true, force: true });
    assert.equal(leftover, false, 'a mount under the test dir survived detach');
  });
  let session: FuseTraceSession | undefined = await attachFuse({ dir, machinePrefix: prefix });
  const sh = async (script: string): Promise<string> => {
    const result = await exec('sh', ['-c', script], { cwd: dir, timeoutMs: 120_000 });
    assert.equal(result.exitCode, 0, `sh -c ${script}\n${result.stderr}`);
    return result.stdout;
  };
  const mounted: Mounted = {
    dir,
    session,
    sh,
    step: async (n, script) => {
      await session!.beginStep(n);
      await sh(script);
      return session!.endStep();
    },
  };
  return mounted;
}

const p = (rel: string): string => (rel ? `${prefix}/${rel}` : prefix);

test('cat a file records a read (and the lookups as statted)', async (t) => {
  if (!requireRoot(t)) return;
  const m = await mountTraced(t, (dir) => writeFileSync(join(dir, 'file1'), 'one\n'));
  assert.equal(isTracefsMounted(m.dir), true);
  const trace = await m.step(1, 'cat file1 > /dev/null');
  assert.deepEqual(trace.read, [p('file1')]);
  assert.ok(trace.statted.includes(p('file1')));
  assert.deepEqual(trace.written, []);
});

test('ls records the directory as listed; stat records statted', async (t) => {
  if (!requireRoot(t)) return;
  const m = await mountTraced(t, (dir) => {
    mkdirSync(join(dir, 'src'));
    writeFileSync(join(dir, 'src/a.ts'), 'a');
    writeFileSync(join(dir, 'b'), 'b');
  });
  const listing = await m.step(1, 'ls src');
  assert.deepEqual(listing.listed, [p('src')]);
  assert.deepEqual(listing.read, []);
  const stat = await m.step(2, 'stat b > /dev/null');
  assert.ok(stat.statted.includes(p('b')));
  assert.deepEqual(stat.listed, []);
  assert.deepEqual(stat.read, []);
});

test('probing missing paths records them absent, up to the first missing component', async (t) => {
  if (!requireRoot(t)) return;
  const m = await mountTraced(t, (dir) => mkdirSync(join(dir, 'nested')));
  const trace = await m.step(1, 'test ! -f missing && test ! -f nested/missing/deep');
  assert.deepEqual(trace.absent, [p('missing'), p('nested/missing')]);
  assert.ok(trace.statted.includes(p('nested')));
});

test('writes, renames and removals are recorded as written and land in the backing dir at once', async (t) => {
  if (!requireRoot(t)) return;
  // A private bind of the directory taken before mounting shows the backing dir, not the mount.
  const under = mkdtempSync(join(tmpdir(), 'strata-trace-under-'));
  let bound = false;
  t.after(async () => {
    if (bound) await exec('umount', ['-l', under]);
    rmSync(under, { recursive: true, force: true });
  });
  const m = await mountTraced(t, (dir) => {
    writeFileSync(join(dir, 'old'), 'old');
    writeFileSync(join(dir, 'doomed'), 'x');
  });
  // The mount is already there, so bind the mount's *backing* dir via the daemon's root fd.
  const fdDir = `/proc/${m.session.daemonPid}/fd`;
  const rootFd = readdirSync(fdDir).find((fd) => readlinkSync(join(fdDir, fd)) === m.dir);
  assert.ok(rootFd, 'the daemon holds an fd on the backing dir');
  assert.equal((await exec('mount', ['--no-canonicalize', '--bind', `/proc/${m.session.daemonPid}/fd/${rootFd}`, under])).exitCode, 0);
  bound = true;
  assert.equal((await exec('mount', ['--make-private', under])).exitCode, 0);
  assert.equal(isTracefsMounted(under), false);

  const trace = await m.step(1, 'echo hi > new && mv old renamed && rm doomed');
  assert.deepEqual(trace.written, [p('doomed'), p('new'), p('old'), p('renamed')]);
  assert.equal(readFileSync(join(under, 'new'), 'utf8'), 'hi\n');
  assert.equal(readFileSync(join(under, 'renamed'), 'utf8'), 'old');
  assert.deepEqual(readdirSync(under).sort(), ['new', 'renamed']);

  // Appends are visible below while the writer still has the file open (no writeback cache).
  await m.session.beginStep(2);
  const seenBelow = await m.sh(`exec 3>>new; echo more >&3; cat ${under}/new; exec 3>&-`);
  assert.equal(seenBelow, 'hi\nmore\n');
  const second = await m.session.endStep();
  assert.ok(second.written.includes(p('new')));
});

test('a script executed from the mount is read', async (t) => {
  if (!requireRoot(t)) return;
  const m = await mountTraced(t, (dir) => {
    writeFileSync(join(dir, 'build.sh'), '#!/bin/sh\necho built\n');
    chmodSync(join(dir, 'build.sh'), 0o755);
  });
  await m.session.beginStep(1);
  assert.equal(await m.sh('./build.sh'), 'built\n');
  const trace = await m.session.endStep();
  assert.deepEqual(trace.read, [p('build.sh')]);
});

test('consecutive steps touching the same paths both record them (kernel caches are expired)', async (t) => {
  if (!requireRoot(t)) return;
  const m = await mountTraced(t, (dir) => {
    mkdirSync(join(dir, 'd'));
    writeFileSync(join(dir, 'd/f'), 'f');
  });
  const script = 'cat d/f > /dev/null; stat -c %s d/f > /dev/null; test ! -e d/nope; ls d > /dev/null';
  for (const n of [1, 2, 3]) {
    const trace = await m.step(n, script);
    assert.deepEqual(trace.read, [p('d/f')], `step ${n}`);
    assert.deepEqual(trace.absent, [p('d/nope')], `step ${n}`);
    assert.deepEqual(trace.listed, [p('d')], `step ${n}`);
    assert.ok(trace.statted.includes(p('d/f')) && trace.statted.includes(p('d')), `step ${n}`);
  }
  // A pure stat (no open) in a later step is still seen: the cached dentry was expired.
  const statOnly = await m.step(4, 'test -f d/f');
  assert.ok(statOnly.statted.includes(p('d')) && statOnly.statted.includes(p('d/f')));
  assert.deepEqual(statOnly.read, []);
  assert.deepEqual(statOnly.absent, []);
});

test('a background process started in step 1 is attributed to the step in which it reads', async (t) => {
  if (!requireRoot(t)) return;
  const m = await mountTraced(t, (dir) => {
    writeFileSync(join(dir, 'late'), 'late');
    writeFileSync(join(dir, 'early'), 'early');
  });
  const background = join(m.dir, '..', 'go');
  await m.session.beginStep(1);
  // Reads `early` now; reads `late` (and appends to a log through an fd opened now) once `go` exists.
  await m.sh(
    `(cat early > /dev/null; exec 3>>log; touch ${background}.started; while [ ! -e ${background} ]; do sleep 0.05; done; ` +
      `cat late > /dev/null; echo done >&3; touch ${background}.done) > /dev/null 2>&1 & ` +
      `while [ ! -e ${background}.started ]; do sleep 0.05; done`,
  );
  const step1 = await m.session.endStep();
  assert.deepEqual(step1.read, [p('early')]);
  await m.session.beginStep(2);
  writeFileSync(background, '');
  await m.sh(`while [ ! -e ${background}.done ]; do sleep 0.05; done`);
  const step2 = await m.session.endStep();
  assert.deepEqual(step2.read, [p('late')]);
  assert.deepEqual(step2.written, [p('log')]);
});

test('a 30 000-file tree: created, statted and listed without exhausting fds', async (t) => {
  if (!requireRoot(t)) return;
  const m = await mountTraced(t);
  const count = 30_000;
  await m.session.beginStep(1);
  await m.sh(`mkdir -p tree && cd tree && seq 1 ${count} | sed 's/^/f/' | xargs touch`);
  const created = await m.session.endStep();
  assert.equal(created.written.filter((path) => path.startsWith(p('tree/f'))).length, count);
  assert.ok(created.written.includes(p('tree')));
  const trace = await m.step(2, 'find tree -type f | wc -l > /dev/null; find tree -type f -print0 | xargs -0 stat -c %s > /dev/null');
  const statted = new Set(trace.statted);
  for (let i = 1; i <= count; i += 997) assert.ok(statted.has(p(`tree/f${i}`)), `tree/f${i} statted`);
  assert.ok(trace.statted.length >= count);
  assert.deepEqual(trace.listed, [p('tree')]);
  const fds = readdirSync(`/proc/${m.session.daemonPid}/fd`).length;
  assert.ok(fds < 100, `daemon holds ${fds} fds`);
  assert.equal(readdirSync(join(m.dir, 'tree')).length, count);
});

test('git init, add, commit and status work inside the mount', async (t) => {
  if (!requireRoot(t)) return;
  const m = await mountTraced(t, (dir) => {
    mkdirSync(join(dir, 'src'));
    writeFileSync(join(dir, 'src/main.c'), 'int main(void) { return 0; }\n');
  });
  const git = 'git -c user.name=t -c user.email=t@example.com -c init.defaultBranch=main';
  await m.step(1, `${git} init -q && ${git} add -A && ${git} commit -qm init`);
  writeFileSync(join(m.dir, 'src/main.c'), 'int main(void) { return 1; }\n');
  await m.session.beginStep(2);
  const status = await m.sh(`${git} status --porcelain`);
  const trace = await m.session.endStep();
  assert.equal(status, ' M src/main.c\n');
  assert.ok(trace.statted.includes(p('src/main.c')));
  assert.ok(trace.read.includes(p('.git/index')));
});

test('gcc compiles and links a program inside the mount, and it runs', async (t) => {
  if (!requireRoot(t)) return;
  const m = await mountTraced(t, (dir) => {
    writeFileSync(join(dir, 'hello.c'), '#include "greeting.h"\n#include <stdio.h>\nint main(void) { puts(GREETING); return 0; }\n');
    writeFileSync(join(dir, 'greeting.h'), '#define GREETING "hello from the mount"\n');
  });
  const trace = await m.step(1, 'gcc -I. -o hello hello.c && ./hello > out.txt');
  assert.equal(readFileSync(join(m.dir, 'out.txt'), 'utf8'), 'hello from the mount\n');
  assert.ok(trace.read.includes(p('hello.c')));
  assert.ok(trace.read.includes(p('greeting.h')));
  assert.ok(trace.read.includes(p('hello')), 'the executed binary is read');
  assert.ok(trace.written.includes(p('hello')));
});

test('links, modes, fifos, sockets, locks, mmap, large files and other uids behave', async (t) => {
  if (!requireRoot(t)) return;
  const m = await mountTraced(t, (dir) => {
    writeFileSync(join(dir, 'secret'), 'root only');
    chmodSync(join(dir, 'secret'), 0o600);
    mkdirSync(join(dir, 'shared'));
    chmodSync(join(dir, 'shared'), 0o777);
  });
  await m.session.beginStep(1);
  await m.sh(
    [
      'echo data > a',
      'ln a hard && ln -s a soft && test "$(cat soft)" = data && test "$(readlink soft)" = a',
      'test "$(stat -c %h a)" = 2 && test "$(stat -c %i a)" = "$(stat -c %i hard)"',
      'chmod 640 a && test "$(stat -c %a a)" = 640',
      'touch -d 2001-02-03T04:05:06Z a && test "$(stat -c %Y a)" = 981173106',
      'truncate -s 3 a && test "$(cat a)" = dat',
      'mkfifo pipe && (echo through > pipe &) && test "$(cat pipe)" = through',
      `python3 -c "import socket,os; s=socket.socket(socket.AF_UNIX); s.bind('sock'); s.listen(1); c=socket.socket(socket.AF_UNIX); c.connect('sock'); print('ok')" | grep -q ok`,
      'flock lockfile -c true && python3 -c "import fcntl; f=open(\'lockfile\',\'w\'); fcntl.lockf(f, fcntl.LOCK_EX); print(1)" | grep -q 1',
      'dd if=/dev/zero of=big bs=1M count=64 status=none && test "$(stat -c %s big)" = 67108864',
      `python3 -c "import mmap; f=open('big','r+b'); m=mmap.mmap(f.fileno(), 0); m[5:10]=b'hello'; m.flush(); m.close(); f.close(); assert open('big','rb').read(10)[5:]==b'hello'"`,
      'mv a b && test ! -e a && test "$(cat hard)" = dat',
      'mkdir -p x/y && rmdir x/y x',
      'setpriv --reuid 1000 --regid 1000 --clear-groups sh -c "echo mine > shared/f; ! cat secret 2>/dev/null"',
      'test "$(stat -c %u:%g shared/f)" = 1000:1000',
      'python3 -c "import os; f=open(\'tmp\',\'w+\'); os.unlink(\'tmp\'); f.write(\'x\'); f.flush(); assert os.fstat(f.fileno()).st_size == 1"',
    ].join(' && '),
  );
  const trace = await m.session.endStep();
  for (const written of ['a', 'b', 'hard', 'soft', 'pipe', 'sock', 'big', 'x', 'x/y', 'shared/f', 'tmp'])
    assert.ok(trace.written.includes(p(written)), `${written} written`);
  assert.ok(trace.statted.includes(p('soft')), 'readlink statted');
  assert.ok(trace.read.includes(p('big')), 'mmapped file read');
  assert.equal(statSync(join(m.dir, 'big')).size, 64 * 1024 * 1024);
});

test('the recorder reports a missing helper binary clearly', async () => {
  const recorder = createFuseRecorder({ binaryPath: '/nonexistent/strata-tracefs' });
  await assert.rejects(recorder.attach({ dir: '/tmp', machinePrefix: '/root/app' }), (error: unknown) => {
    assert.ok(isStrataError(error));
    assert.equal(error.code, 'STRATA_TRACE');
    assert.match(error.hint ?? '', /scripts\/install\.sh/);
    return true;
  });
});

test('attach fails with the daemon error when the directory does not exist', async (t) => {
  if (!requireRoot(t)) return;
  await assert.rejects(attachFuse({ dir: '/nonexistent/strata-dir', machinePrefix: '/root/app' }), (error: unknown) => {
    assert.ok(isStrataError(error));
    assert.match(error.message, /open \/nonexistent\/strata-dir/);
    return true;
  });
});

test('inside another mount namespace: the mount is invisible to the host and traced', async (t) => {
  if (!requireRoot(t)) return;
  const base = mkdtempSync(join(tmpdir(), 'strata-trace-ns-'));
  const dir = join(base, 'app');
  mkdirSync(dir);
  writeFileSync(join(dir, 'f'), 'in ns');
  const { spawn } = await import('node:child_process');
  const machine = spawn('unshare', ['-m', '--propagation', 'private', 'sleep', '300'], { stdio: 'ignore' });
  let session: FuseTraceSession | undefined;
  t.after(async () => {
    await session?.detach();
    machine.kill('SIGKILL');
    rmSync(base, { recursive: true, force: true });
  });
  // Wait until unshare has exec'd sleep inside its new namespace.
  const hostNs = readlinkSync('/proc/self/ns/mnt');
  for (let i = 0; i < 100 && readlinkSync(`/proc/${machine.pid}/ns/mnt`) === hostNs; i++)
    await new Promise((r) => setTimeout(r, 20));
  session = await attachFuse({ dir, machinePrefix: '/app', mountNamespacePid: machine.pid! });
  assert.equal(isTracefsMounted(dir), false, 'not mounted in the host namespace');
  await session.beginStep(1);
  const inside = await exec('nsenter', ['-t', String(machine.pid), '-m', 'cat', join(dir, 'f')]);
  assert.equal(inside.stdout, 'in ns');
  const trace = await session.endStep();
  assert.deepEqual(trace.read, ['/app/f']);
  const mounts = await exec('nsenter', ['-t', String(machine.pid), '-m', 'cat', '/proc/self/mounts']);
  assert.match(mounts.stdout, /fuse\.strata-tracefs/);
  await session.detach();
  const after = await exec('nsenter', ['-t', String(machine.pid), '-m', 'cat', '/proc/self/mounts']);
  assert.doesNotMatch(after.stdout, /fuse\.strata-tracefs/);
});
