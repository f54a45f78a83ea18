// `npm run bench [-- name...]`: runs the benchmark suites side by side in one process, prints one table
// (median, goal, ratio to goal) and saves the raw rows as JSON under bench/results/. A run that measured
// `buildkit` redraws docs/bench/buildkit.svg; `npm run bench -- plot` alone only redraws it from bench/results/.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeBuildkitPlot } from './plot.js';
import type { BenchRow } from './types.js';


type Suite = { name: string; load: () => Promise<() => Promise<BenchRow[]>> };

const SUITES: Suite[] = [
  { name: 'plan', load: async () => (await import('./plan.js')).benchPlan },
  { name: 'snapshot', load: async () => (await import('./snapshot.js')).benchSnapshot },
  { name: 'sandbox', load: async () => (await import('./sandbox.js')).benchSandbox },
  { name: 'trace', load: async () => (await import('./trace.js')).benchTrace },
  { name: 'trace-real', load: async () => (await import('./trace-real.js')).benchTraceReal },
  { name: 'engine', load: async () => (await import('./engine.js')).benchEngine },
  { name: 'directives', load: async () => (await import('./directives.js')).benchDirectives },
  { name: 'cachedirs', load: async () => (await import('./cachedirs.js')).benchCacheDirs },
  { name: 'buildkit', load: async () => (await import('./buildkit.js')).benchBuildkit },
  { name: 'vm', load: async () => (await import('./vm.js')).benchVm },
];

function formatMs(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(ms < 10 ? 2 : 1)} ms`;
}

async function main(): Promise<void> {
  const wanted = process.argv.slice(2);
  if (wanted.length === 1 && wanted[0] === 'plot') {
    process.stdout.write(`plot: ${await writeBuildkitPlot()}\n`);
    return;
  }
  const unknown = wanted.filter((name) => name !== 'plot' && !SUITES.some((s) => s.name === name));
  if (unknown.length > 0) throw new Error(`bench: unknown suite(s) ${unknown.join(', ')}; suites: ${SUITES.map((s) => s.name).join(', ')}, or plot alone`);
  const selected = SUITES.filter((s) => wanted.length === 0 || wanted.includes(s.name));
  const rows: Array<BenchRow & { suite: string }> = [];
  const failures: string[] = [];
  for (const suite of selected) {
    process.stderr.write(`bench: ${suite.name}...\n`);
    try {
      const run = await suite.load();
      for (const row of await run()) rows.push({ suite: suite.name, ...row });
    } catch (error) {
      failures.push(`${suite.name}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  const header = '| suite | measurement | median | goal | within goal |';
  const lines = [header, '|---|---|---|---|---|'];
  for (const row of rows) {
    const goal = row.goalMs === undefined ? '' : formatMs(row.goalMs);
    const ok = row.goalMs === undefined ? '' : row.medianMs <= row.goalMs ? 'yes' : `no (${(row.medianMs / row.goalMs).toFixed(1)}×)`;
    lines.push(`| ${row.suite} | ${row.name}${row.note ? ` (${row.note})` : ''} | ${formatMs(row.medianMs)} | ${goal} | ${ok} |`);
  }
  process.stdout.write(lines.join('\n') + '\n');
  const dir = join(new URL('.', import.meta.url).pathname, 'results');
  await mkdir(dir, { recursive: true });
  const file = join(dir, `bench-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  await writeFile(file, JSON.stringify({ date: new Date().toISOString(), rows, failures }, null, 2) + '\n');
  process.stdout.write(`raw results: ${file}\n`);
  if (wanted.includes('plot') || rows.some((row) => row.suite === 'buildkit')) process.stdout.write(`plot: ${await writeBuildkitPlot()}\n`);
  if (failures.length > 0) {
    process.stderr.write(`bench: ${failures.length} suite(s) failed:\n${failures.join('\n')}\n`);
    process.exitCode = 1;
  }
}

await main();
