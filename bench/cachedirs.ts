// CACHE directories (root; real machines, network to Debian's archive): a step that does cached work,
// rerun on every run (--no-cache), with its caches kept in CACHE dirs versus throwaway ones
// (--no-cache-dirs). The first run fills the kept caches and is not counted; then kept and throwaway
// runs alternate, side by side. Two workloads, both with the apt caches (/var/cache/apt/archives,
// /var/lib/apt/lists) as CACHE dirs:
// - `apt-get update` + install jq (small: the package lists dominate);
// - `apt-get update` + download Postgres 15's .debs (~20 MB of packages, nothing installed).
// Each reports the whole run's wall time and the step's own time (the run minus planning, machine start
// and snapshots).
import { performance } from 'node:perf_hooks';
import type { Engine } from '../src/compose/engine.js';
import type { Reporter } from '../src/engine/reporter.js';
import { runRepository } from '../src/engine/runRepository.js';
import type { BenchRow } from './types.js';
import { benchRepo, median, withEngine } from './util.js';

interface Workload {
  name: string;
  command: string;
}

const WORKLOADS: Workload[] = [
  { name: 'apt-get update + install jq', command: 'apt-get update -q && apt-get install -y -q --no-install-recommends jq' },
  {
    name: "apt-get update + download Postgres 15's .debs",
    command: 'apt-get update -q && apt-get install -y -q --no-install-recommends --download-only postgresql-15 && ls /var/cache/apt/archives/*.deb | wc -l',
  },
];

async function benchWorkload(engine: Engine, workload: Workload, rounds: number): Promise<BenchRow[]> {
  const repo = benchRepo({ Layerfile: `FROM vm/debian:12\nCACHE /var/cache/apt/archives /var/lib/apt/lists\nRUN ${workload.command}\n` });
  try {
    const timeRun = async (noCacheDirs: boolean): Promise<{ run: number; step: number }> => {
      let step = 0;
      const reporter: Reporter = {
        onStepStatus: (e) => {
          if (e.status === 'done' && e.durationMs !== undefined) step += e.durationMs;
        },
      };
      const start = performance.now();
      const result = await runRepository({ repoDir: repo.dir, commit: 'HEAD', noCache: true, noCacheDirs }, { ...engine.deps, reporter });
      const run = performance.now() - start;
      if (result.status !== 'success') throw new Error(`cache dirs bench: ${workload.name}: the run failed (${[...result.outcomes.values()].map((o) => o.message).join('; ')})`);
      return { run, step };
    };
    await timeRun(false); // fills the kept caches (and brings the image into the store)
    const kept: Array<{ run: number; step: number }> = [];
    const throwaway: Array<{ run: number; step: number }> = [];
    for (let i = 0; i < rounds; i++) {
      kept.push(await timeRun(false));
      throwaway.push(await timeRun(true));
    }
    const runs = (samples: typeof kept) => median(samples.map((s) => s.run));
    const steps = (samples: typeof kept) => median(samples.map((s) => s.step));
    const ratio = (runs(throwaway) / runs(kept)).toFixed(2);
    const stepRatio = (steps(throwaway) / steps(kept)).toFixed(2);
    return [
      { name: `CACHE apt dirs: ${workload.name}, kept caches`, medianMs: runs(kept), note: `${rounds} runs; ${ratio}× faster than throwaway` },
      { name: `CACHE apt dirs: ${workload.name}, --no-cache-dirs`, medianMs: runs(throwaway), note: `${rounds} runs` },
      { name: `CACHE apt dirs: ${workload.name}, the step alone, kept caches`, medianMs: steps(kept), note: `${stepRatio}× faster than throwaway` },
      { name: `CACHE apt dirs: ${workload.name}, the step alone, --no-cache-dirs`, medianMs: steps(throwaway) },
    ];
  } finally {
    repo.remove();
  }
}

export async function benchCacheDirs(rounds = Number(process.env.STRATA_BENCH_ROUNDS ?? 3)): Promise<BenchRow[]> {
  return withEngine({}, async (engine) => {
    const rows: BenchRow[] = [];
    for (const workload of WORKLOADS) rows.push(...(await benchWorkload(engine, workload, rounds)));
    return rows;
  });
}
