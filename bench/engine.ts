// Whole-engine benchmarks (root; real machines, snapshots, tracing):
// - the seed example of MISSION.md with its sleeps (STRATA_BENCH_SLEEP seconds, default 20): wall time
//   of the first run and of each of the four edits;
// - the no-op decision: a commit that changes a file no step read, on a 20 000-file repo, against the
//   floor of `git diff --name-only` + lstat of the changed paths.
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { openEngine } from '../src/compose/engine.js';
import { runRepository } from '../src/engine/runRepository.js';
import type { BenchRow } from './types.js';
import { benchRepo, median } from './util.js';

export async function benchEngine(): Promise<BenchRow[]> {
  const sleep = Number(process.env.STRATA_BENCH_SLEEP ?? 20);
  const store = mkdtempSync(join(tmpdir(), 'strata-bench-store-'));
  const engine = await openEngine({ store, reporter: {} });
  const rows: BenchRow[] = [];
  const cleanups: string[] = [store];
  try {
    const layerfile = (extra: string) => `FROM vm/debian:12\nCOPY . .\nRUN sleep ${sleep} && cat file1\nRUN sleep ${sleep} && cat file2${extra}\n`;
    const seed = benchRepo({ Layerfile: layerfile(''), file1: '1\n', file2: '2\n', other: 'x\n' });
    cleanups.push(seed.dir);
    const timeRun = async (name: string, expectRan: number, note: string): Promise<void> => {
      const start = performance.now();
      const result = await runRepository({ repoDir: seed.dir, commit: 'HEAD' }, engine.deps);
      const ms = performance.now() - start;
      if (result.status !== 'success' || result.stepsRan !== expectRan) {
        throw new Error(`${name}: expected success with ${expectRan} step(s) run, got ${result.status} with ${result.stepsRan}`);
      }
      rows.push({ name, medianMs: ms, note });
    };
    await timeRun(`seed: first run (2 × sleep ${sleep})`, 3, '3 steps ran');
    seed.commit({ other: 'y\n' });
    await timeRun('seed: edit an unrelated file', 0, '0 steps ran');
    seed.commit({ file2: '2b\n' });
    await timeRun('seed: edit file2', 1, '1 step ran');
    seed.commit({ file1: '1b\n' });
    await timeRun('seed: edit file1', 2, '2 steps ran');
    seed.commit({ Layerfile: layerfile(' && echo edited') });
    await timeRun('seed: edit the Layerfile last line', 1, '1 step ran');

    // The no-op decision on a big repo.
    const files: Record<string, string> = { Layerfile: 'FROM vm/debian:12\nCOPY . /app\nRUN cat /app/pkg0/f0.txt\n' };
    for (let i = 0; i < 20_000; i++) files[`pkg${i % 50}/f${i}.txt`] = `${i}\n`;
    const big = benchRepo(files);
    cleanups.push(big.dir);
    await runRepository({ repoDir: big.dir, commit: 'HEAD' }, engine.deps);
    const decisions: number[] = [];
    const floors: number[] = [];
    for (let i = 0; i < 5; i++) {
      const before = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: big.dir, encoding: 'utf8' }).trim();
      big.commit({ [`pkg1/f${1000 + i}.txt`]: `changed ${i}\n` });
      let start = performance.now();
      const result = await runRepository({ repoDir: big.dir, commit: 'HEAD' }, engine.deps);
      decisions.push(performance.now() - start);
      if (result.stepsRan !== 0) throw new Error(`no-op push ran ${result.stepsRan} step(s)`);
      start = performance.now();
      const changed = execFileSync('git', ['diff', '--name-only', before, 'HEAD'], { cwd: big.dir, encoding: 'utf8' }).split('\n').filter(Boolean);
      for (const path of changed) lstatSync(join(big.dir, path));
      floors.push(performance.now() - start);
    }
    const decision = median(decisions);
    const floor = median(floors);
    rows.push({ name: 'no-op push on 20 000 files (whole run, nothing reruns)', medianMs: decision, goalMs: 1000, note: `${(decision / floor).toFixed(1)}× the git diff + lstat floor` });
    rows.push({ name: 'floor: git diff --name-only + lstat of changed paths', medianMs: floor });
  } finally {
    await engine.close();
    for (const dir of cleanups) rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}
