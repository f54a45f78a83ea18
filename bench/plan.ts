// Planner decision time on a large repo: 20 000 copied files, 12 steps each with a realistic trace
// (a build reading everything, tests listing every directory, probes for absent config files).
// Goal (MISSION.md): a no-op push decides in well under a second. Each timing includes building the
// trace indexes from scratch (fresh trace objects per run, so no memoized index helps).
import { performance } from 'node:perf_hooks';
import { plan } from '../src/plan/planner.js';
import type { CachedChain, PlanInput, PlanStep, SnapshotName, SourceChange } from '../src/plan/types.js';
import type { StepTrace } from '../src/trace/types.js';
import type { BenchRow } from './types.js';
import { median } from './util.js';


const FILES = 20_000;
const STEPS = 12;

function repoPaths(): string[] {
  const paths: string[] = [];
  for (let i = 0; i < FILES; i++) paths.push(`pkg${i % 40}/src/mod${Math.floor(i / 40) % 25}/file${i}.ts`);
  return paths;
}

function makeInput(changes: SourceChange[]): PlanInput {
  const files = repoPaths().map((p) => `/root/app/${p}`);
  const dirs = [...new Set(files.map((f) => f.slice(0, f.lastIndexOf('/'))))];
  const traceFor = (step: number): StepTrace => ({
    // Later steps read everything (a build), earlier ones a slice.
    read: (step >= 6 ? files : files.filter((_, i) => i % (step + 2) === 0)).slice().sort(),
    listed: dirs.slice().sort(),
    statted: files.filter((_, i) => i % 3 === 0).sort(),
    absent: dirs.map((d) => `${d}/.eslintrc.json`).sort(),
    written: [`/root/app/dist${step}`],
  });
  const steps: PlanStep[] = Array.from({ length: STEPS }, (_, i) => ({
    definitionKey: `key${i}`,
    line: i + 2,
    kind: i === 0 ? 'copy' : 'run',
    text: i === 0 ? 'COPY . app' : `RUN step ${i}`,
    repeatable: false,
  }));
  const chain: CachedChain = {
    chainId: 'bench',
    sourceTreeId: 'tree',
    complete: true,
    steps: steps.map((_, i) => ({
      definitionKey: `key${i}`,
      snapshot: `snap${i}` as SnapshotName,
      trace: i === 0 ? { read: [], listed: [], statted: [], absent: [], written: [] } : traceFor(i),
      copies: i === 0 ? [{ source: '', dest: '/root/app' }] : [],
      repeatable: false,
      succeeded: true,
    })),
  };
  return { steps, candidates: [{ chain, changes }] };
}


function time(name: string, changes: () => SourceChange[], runs: number, goalMs?: number): BenchRow {
  const samples: number[] = [];
  for (let run = 0; run < runs; run++) {
    const input = makeInput(changes()); // fresh traces: no memoized index
    const start = performance.now();
    plan(input);
    samples.push(performance.now() - start);
  }
  return { name, medianMs: median(samples), ...(goalMs === undefined ? {} : { goalMs }) };
}

const file = (id: string) => ({ type: 'file' as const, mode: 0o100644, size: 10, contentId: id });

export async function benchPlan(options: { runs?: number } = {}): Promise<BenchRow[]> {
  const runs = options.runs ?? 7;
  const unrelated = (): SourceChange[] => [{ path: 'README.md', before: file('a'), after: file('b') }];
  const lateEdit = (): SourceChange[] => [{ path: 'pkg1/src/mod0/file1.ts', before: file('a'), after: file('b') }];
  const manyUnrelated = (): SourceChange[] =>
    Array.from({ length: 1000 }, (_, i) => ({ path: `docs/page${i}.md`, before: file('a'), after: file('b') }));
  return [
    time('plan: no-op push, 20k files x 12 steps', () => [], runs, 100),
    time('plan: 1 unrelated file changed (all traces indexed)', unrelated, runs, 1000),
    time('plan: 1 read file changed', lateEdit, runs, 1000),
    time('plan: 1000 unrelated files changed', manyUnrelated, runs, 1000),
  ];
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const row of await benchPlan()) console.log(`${row.name}: ${row.medianMs.toFixed(2)} ms (goal ${row.goalMs ?? '-'} ms)`);
}
