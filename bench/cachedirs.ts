// CACHE directories (root; real machines, network to Debian's archive): a step that installs a
// package with apt, rerun on every run (--no-cache), with its apt caches kept in CACHE dirs versus
// throwaway ones (--no-cache-dirs). The first run fills the kept caches and is not counted.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { openEngine } from '../src/cli/compose.js';
import { runRepository } from '../src/engine/runRepository.js';
import type { BenchRow } from './types.js';

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

export async function benchCacheDirs(rounds = Number(process.env.STRATA_BENCH_ROUNDS ?? 3)): Promise<BenchRow[]> {
  const store = mkdtempSync(join(tmpdir(), 'strata-bench-store-'));
  const repo = mkdtempSync(join(tmpdir(), 'strata-bench-repo-'));
  const engine = await openEngine({ store, reporter: {} });
  try {
    writeFileSync(
      join(repo, 'Layerfile'),
      'FROM vm/debian:12\nCACHE /var/cache/apt/archives /var/lib/apt/lists\nRUN apt-get update -q && apt-get install -y -q --no-install-recommends jq\n',
    );
    const git = (...args: string[]) => execFileSync('git', args, { cwd: repo, encoding: 'utf8' });
    git('init', '-q', '-b', 'main');
    git('add', '-A');
    git('-c', 'user.email=bench@example.com', '-c', 'user.name=bench', 'commit', '-q', '-m', 'bench');

    const timeRun = async (noCacheDirs: boolean): Promise<number> => {
      const start = performance.now();
      const result = await runRepository({ repoDir: repo, commit: 'HEAD', noCache: true, noCacheDirs }, engine.deps);
      if (result.status !== 'success') throw new Error(`cache dirs bench: the run failed (${[...result.outcomes.values()].map((o) => o.message).join('; ')})`);
      return performance.now() - start;
    };
    await timeRun(false); // fills the kept caches (and builds the image if needed)
    const kept: number[] = [];
    const throwaway: number[] = [];
    for (let i = 0; i < rounds; i++) {
      kept.push(await timeRun(false));
      throwaway.push(await timeRun(true));
    }
    const ratio = (median(throwaway) / median(kept)).toFixed(2);
    return [
      { name: 'CACHE apt dirs: apt-get update + install jq, kept caches', medianMs: median(kept), note: `${rounds} runs; ${ratio}× faster than throwaway` },
      { name: 'CACHE apt dirs: apt-get update + install jq, --no-cache-dirs', medianMs: median(throwaway), note: `${rounds} runs` },
    ];
  } finally {
    await engine.close();
    rmSync(store, { recursive: true, force: true });
    rmSync(repo, { recursive: true, force: true });
  }
}
