// CACHE directories end to end: real git repos, machines, snapshots and FUSE tracing. A CACHE dir
// survives between runs (also under a traced COPY destination), never reaches a snapshot, is replaced
// by a throwaway one with --no-cache-dirs, is given to the USER of its line, and `cache prune` empties it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { cachePruneCommand } from '../../src/cli/commands/cache.js';
import { cacheDirId, cacheDirsRoot, createCacheDirStore, listCacheDirs, parseAge, pruneCacheDirs, resolveCacheDirs } from '../../src/engine/cacheDirs.js';
import { initialExecState } from '../../src/engine/stepEnv.js';
import { parseLayerfile } from '../../src/layerfile/index.js';
import type { SnapshotName } from '../../src/snapshot/types.js';
import { requireRoot } from '../helpers/env.js';
import { createGitRepo, createTestEngine, type TestEngine } from '../helpers/engine.js';

const ROOT = 'main-layerfile';
const TIMEOUT = 300_000;

type Repo = ReturnType<typeof createGitRepo>;
type Run = Awaited<ReturnType<TestEngine['run']>>;

const failures = (run: Run): string => [...run.result.outcomes.values()].map((o) => o.message).filter(Boolean).join('; ');

async function runOk(engine: TestEngine, repo: Repo, what: string, options: { noCacheDirs?: boolean } = {}): Promise<Run> {
  const run = await engine.run({ repoDir: repo.dir, commit: 'HEAD', ...options });
  assert.equal(run.result.status, 'success', `${what}: the run did not succeed: ${failures(run)}`);
  return run;
}

/** What a step printed, without the base image's preparation lines. */
function printed(run: Run, step: number): string | undefined {
  return run.output.get(`${ROOT}#${step}`)?.split(/(?<=\n)/).filter((line) => !line.startsWith('vm/debian:12: ')).join('');
}

function finalSnapshot(run: Run): SnapshotName {
  const snapshot = run.result.outcomes.get('Layerfile')?.finalSnapshot;
  assert.ok(snapshot, 'the runner has a final snapshot');
  return snapshot;
}

async function prune(store: string, olderThan?: string): Promise<string> {
  const out = new PassThrough();
  let text = '';
  out.on('data', (chunk: Buffer) => (text += chunk.toString()));
  assert.equal(await cachePruneCommand({ store, ...(olderThan ? { olderThan } : {}) }, out), 0);
  return text;
}

const LAYERFILE = `FROM vm/debian:12
CACHE /root/.cache/demo
COPY . /app
WORKDIR /app
CACHE build-cache
RUN cat input.txt && echo line >> /root/.cache/demo/log && echo line >> build-cache/log && echo "demo=$(wc -l < /root/.cache/demo/log) build=$(wc -l < build-cache/log)"
`;
const RUN_STEP = 4;

test('CACHE: kept across runs (also under a COPY destination), never in a snapshot; --no-cache-dirs; cache prune', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const repo = createGitRepo(t, { Layerfile: LAYERFILE, 'input.txt': 'one\n' });
  const cacheRoot = cacheDirsRoot(engine.store);

  const first = await runOk(engine, repo, 'first run');
  assert.equal(printed(first, RUN_STEP), 'one\ndemo=1 build=1\n');

  // The persistent dirs: one per (repo, Layerfile, path), relative paths resolved against WORKDIR.
  const kept = await listCacheDirs(cacheRoot);
  assert.deepEqual(kept.map((d) => d.path).sort(), ['/app/build-cache', '/root/.cache/demo']);
  assert.ok(kept.every((d) => d.layerfile === 'Layerfile' && d.lastUsedAt > 0));
  const demoData = join(kept.find((d) => d.path === '/root/.cache/demo')!.dir, 'data');
  const buildData = join(kept.find((d) => d.path === '/app/build-cache')!.dir, 'data');
  assert.equal(readFileSync(join(demoData, 'log'), 'utf8'), 'line\n');
  assert.equal(readFileSync(join(buildData, 'log'), 'utf8'), 'line\n');

  // The snapshot after the step holds the mountpoints, empty: nothing written there reached it.
  const snapshotRoot = engine.engine.deps.snapshots.path(finalSnapshot(first));
  assert.deepEqual(readdirSync(join(snapshotRoot, 'root/.cache/demo')), []);
  assert.deepEqual(readdirSync(join(snapshotRoot, 'app/build-cache')), []);
  assert.equal(readFileSync(join(snapshotRoot, 'app/input.txt'), 'utf8'), 'one\n', 'the snapshot is the one after the step');

  // The step reads input.txt: changing it reruns the step, which finds both caches as it left them.
  repo.commit('two', { 'input.txt': 'two\n' });
  const second = await runOk(engine, repo, 'second run');
  // The CACHE line changes no file: its state is the WORKDIR's snapshot, restored, and only the RUN reruns.
  assert.deepEqual(second.ran, [`${ROOT}#${RUN_STEP}`], 'COPY, WORKDIR and CACHE stay cached');
  assert.equal(printed(second, RUN_STEP), 'two\ndemo=2 build=2\n');
  const secondRoot = engine.engine.deps.snapshots.path(finalSnapshot(second));
  assert.deepEqual(readdirSync(join(secondRoot, 'root/.cache/demo')), []);
  assert.deepEqual(readdirSync(join(secondRoot, 'app/build-cache')), []);

  // --no-cache-dirs: empty throwaway directories; the kept ones are not touched, the throwaway ones removed.
  repo.commit('three', { 'input.txt': 'three\n' });
  const throwaway = await runOk(engine, repo, 'run without cache dirs', { noCacheDirs: true });
  assert.equal(printed(throwaway, RUN_STEP), 'three\ndemo=1 build=1\n');
  assert.equal(readFileSync(join(demoData, 'log'), 'utf8'), 'line\nline\n');
  assert.equal(readFileSync(join(buildData, 'log'), 'utf8'), 'line\nline\n');
  assert.deepEqual(readdirSync(join(cacheRoot, 'throwaway')), [], 'throwaway directories are removed after the run');

  // prune: --older-than keeps recently used dirs; without it everything goes, and the next run starts empty.
  assert.match(await prune(engine.store, '7d'), /^0 cache directories unused for more than 7d removed\n$/);
  assert.ok(existsSync(join(demoData, 'log')));
  const pruned = await prune(engine.store);
  assert.match(pruned, /removed \/app\/build-cache of Layerfile/);
  assert.match(pruned, /removed \/root\/.cache\/demo of Layerfile/);
  assert.match(pruned, /2 cache directories removed\n$/);
  assert.deepEqual(await listCacheDirs(cacheRoot), []);
  assert.equal(existsSync(demoData), false);

  repo.commit('four', { 'input.txt': 'four\n' });
  const afterPrune = await runOk(engine, repo, 'run after prune');
  assert.equal(printed(afterPrune, RUN_STEP), 'four\ndemo=1 build=1\n');
});

test('CACHE: ~ is the home of the USER at that line, who owns and can write the directory', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const layerfile = (marker: string) => `FROM vm/debian:12
USER app
CACHE ~/.cache/tool
RUN echo cached step
RUN echo ${marker} >> ~/.cache/tool/log && touch ~/home-is-writable && stat -c %U ~/.cache/tool && cat ~/.cache/tool/log
`;
  const repo = createGitRepo(t, { Layerfile: layerfile('a') });
  const first = await runOk(engine, repo, 'first run');
  assert.equal(printed(first, 3), 'app\na\n');
  const [kept] = await listCacheDirs(cacheDirsRoot(engine.store));
  assert.equal(kept?.path, '/home/app/.cache/tool');

  repo.commit('b', { Layerfile: layerfile('b') });
  const second = await runOk(engine, repo, 'second run');
  assert.deepEqual(second.ran, [`${ROOT}#3`]);
  assert.equal(printed(second, 3), 'app\na\nb\n');

  // After a prune the kept dir is new and root's. The run restores after the CACHE line (it is not
  // run again), so the machine start must give the directory to the user.
  await prune(engine.store);
  repo.commit('c', { Layerfile: layerfile('c') });
  const third = await runOk(engine, repo, 'run after prune');
  assert.deepEqual(third.ran, [`${ROOT}#3`]);
  assert.equal(printed(third, 3), 'app\nc\n');
});

// The pieces without a machine (no root needed).

test('resolveCacheDirs: relative to the WORKDIR and ~ to the home of the USER at the line; duplicates once; / refused', () => {
  const parsed = parseLayerfile('FROM vm/debian:12\nCACHE ~/.npm rel\nWORKDIR /app\nCACHE build ../up /abs/./x/..\nUSER app\nCACHE ~ ~/.cache rel /app/build\n', 'Layerfile');
  assert.deepEqual(parsed.errors, []);
  const homes: Record<string, string> = { root: '/root', app: '/home/app' };
  const dirs = resolveCacheDirs(parsed.layerfile.instructions, initialExecState(), {}, (user) => homes[user] ?? '?');
  assert.deepEqual(
    dirs.map((d) => `${d.line} ${d.user} ${d.path}`),
    ['2 root /root/.npm', '2 root /root/rel', '4 root /app/build', '4 root /up', '4 root /abs', '6 app /home/app', '6 app /home/app/.cache', '6 app /app/rel'],
  );
  const slash = parseLayerfile('FROM vm/debian:12\nWORKDIR /\nCACHE .\n', 'Layerfile');
  assert.throws(() => resolveCacheDirs(slash.layerfile.instructions, initialExecState(), {}, () => '/root'), /CACHE \/ would hide the whole machine/);
});

test('cache dir store: a busy dir gives the next run an empty throwaway one; release unlocks; prune leaves busy dirs alone', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'strata-cachedirs-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  let clock = 1_000;
  const store = createCacheDirStore(root, { now: () => clock });
  const request = { repo: '/repo', layerfile: 'a/Layerfile', paths: ['/x/y', '/x'], throwaway: false };

  const first = await store.acquire(request);
  assert.deepEqual(first.mounts.map((m) => [m.destination, m.persistent]), [['/x', true], ['/x/y', true]], 'parents first');
  writeFileSync(join(first.mounts[0]!.source, 'kept'), 'data');

  const second = await store.acquire(request);
  assert.deepEqual(second.mounts.map((m) => m.persistent), [false, false]);
  assert.equal(second.notes.length, 2);
  assert.match(second.notes[0]!, /CACHE \/x: in use by another runner of this strata process; this run uses an empty directory/);
  assert.deepEqual(readdirSync(second.mounts[0]!.source), []);
  assert.notEqual(second.mounts[0]!.source, second.mounts[1]!.source);

  // Held by another live process (pid 1 here): the note names it.
  const foreignDir = join(root, cacheDirId('/repo', 'c/Layerfile', '/z'));
  mkdirSync(foreignDir, { recursive: true });
  writeFileSync(join(foreignDir, 'lock'), '1');
  const blocked = await store.acquire({ ...request, layerfile: 'c/Layerfile', paths: ['/z'] });
  assert.match(blocked.notes[0]!, /^CACHE \/z: in use by another run \(pid 1\); this run uses an empty directory$/);
  await blocked.release();
  rmSync(foreignDir, { recursive: true, force: true });

  // Another Layerfile's CACHE of the same path is a different directory.
  const other = await store.acquire({ ...request, layerfile: 'b/Layerfile', paths: ['/x'] });
  assert.equal(other.mounts[0]!.persistent, true);
  assert.notEqual(other.mounts[0]!.source, first.mounts[0]!.source);
  await other.release();

  const busy = await pruneCacheDirs(root, { now: clock });
  assert.deepEqual(busy.busy.map((d) => d.path).sort(), ['/x', '/x/y']);
  assert.deepEqual(busy.removed.map((d) => `${d.layerfile} ${d.path}`), ['b/Layerfile /x']);

  await second.release();
  assert.equal(existsSync(second.mounts[0]!.source), false, 'throwaway dirs are removed on release');
  await first.release();
  await first.release(); // idempotent

  clock = 5_000;
  const third = await store.acquire({ ...request, paths: ['/x'] });
  assert.equal(third.mounts[0]!.persistent, true);
  assert.equal(readFileSync(join(third.mounts[0]!.source, 'kept'), 'utf8'), 'data', 'the same directory again');
  await third.release();

  // /x was used at 5000, /x/y last at 1000.
  const old = await pruneCacheDirs(root, { now: 10_000, olderThanMs: 6_000 });
  assert.deepEqual(old.removed.map((d) => d.path), ['/x/y']);
  assert.deepEqual((await listCacheDirs(root)).map((d) => d.path), ['/x']);
});

test('parseAge', () => {
  assert.equal(parseAge('7d'), 7 * 86_400_000);
  assert.equal(parseAge('12h'), 12 * 3_600_000);
  assert.equal(parseAge('30m'), 1_800_000);
  assert.equal(parseAge('2w'), 14 * 86_400_000);
  assert.equal(parseAge('3'), 3 * 86_400_000);
  assert.throws(() => parseAge('soon'), /invalid age/);
});

test('CACHE with SPLIT: every copy keeps a CACHE dir of its own (the copies run at once; none gets an empty stand-in)', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  // Each copy appends its index to its cache and prints what the cache held before.
  const repo = createGitRepo(t, { Layerfile: 'FROM vm/debian:12\nCACHE /root/.cache/x\nSPLIT 2\nCOPY input.txt /app/\nRUN cat /app/input.txt && echo "before: $(cat /root/.cache/x/log 2>/dev/null | tr "\\n" " ")" && echo $SPLIT >> /root/.cache/x/log\n', 'input.txt': 'one\n' });
  const first = await runOk(engine, repo, 'first run');
  const copies = [ROOT, `${ROOT}-2`];
  assert.deepEqual(copies.map((r) => first.output.get(`${r}#3`)), ['one\nbefore: \n', 'one\nbefore: \n']);
  repo.commit('two', { 'input.txt': 'two\n' });
  const second = await runOk(engine, repo, 'second run');
  assert.deepEqual(copies.map((r) => second.output.get(`${r}#3`)), ['two\nbefore: 0 \n', 'two\nbefore: 1 \n'], 'each copy finds what it left');
  assert.ok(![...second.output.values()].some((log) => log.includes('in use by')), 'no copy got an empty stand-in');
  assert.equal((await listCacheDirs(cacheDirsRoot(engine.store))).length, 2, 'one persistent dir per copy');
});
