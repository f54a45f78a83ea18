// Tracing overhead: the same workloads on a plain directory and through strata-tracefs mounted over
// it (each traced run is one whole step: beginStep expires the kernel caches, endStep collects the
// trace, both inside the timing). Needs root and native/build/strata-tracefs.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { exec } from '../src/util/exec.js';
import { attachFuse } from '../src/trace/fuse.js';
import type { FuseRecorderOptions } from '../src/trace/fuse.js';
import type { BenchRow } from './types.js';
import { median } from './util.js';


const workloads: Array<{ name: string; script: string }> = [
  { name: 'find', script: 'find . -type f | wc -l > /dev/null' },
  { name: 'cat all', script: 'find . -type f -name "*.txt" -exec cat {} + > /dev/null' },
  { name: 'stat all', script: 'find . -type f -printf "%s %T@\\n" > /dev/null' },
  { name: 'tar c', script: 'tar cf - . > /dev/null' },
  { name: 'gcc 40 files', script: 'for f in src/*.c; do gcc -O1 -Iinclude -c "$f" -o /dev/null || exit 1; done' },
];

/** ~5 000 files: 50 dirs x 96 text files of 2 KiB, 40 C files each including 20 of 80 headers. */
function populate(dir: string): void {
  const text = 'x'.repeat(2047) + '\n';
  for (let d = 0; d < 50; d++) {
    mkdirSync(join(dir, `d${d}`));
    for (let f = 0; f < 96; f++) writeFileSync(join(dir, `d${d}`, `f${f}.txt`), text);
  }
  mkdirSync(join(dir, 'include'));
  mkdirSync(join(dir, 'src'));
  for (let h = 0; h < 80; h++)
    writeFileSync(join(dir, 'include', `h${h}.h`), `#pragma once\nstatic inline int h${h}(int x) { return x * ${h} + 1; }\n`);
  for (let c = 0; c < 40; c++) {
    const includes = Array.from({ length: 20 }, (_, i) => `#include "h${(c + i * 3) % 80}.h"`).join('\n');
    const calls = Array.from({ length: 20 }, (_, i) => `h${(c + i * 3) % 80}(a)`).join(' + ');
    writeFileSync(join(dir, 'src', `c${c}.c`), `#include <stdio.h>\n#include <string.h>\n${includes}\nint f${c}(int a) { return ${calls}; }\n`);
  }
}

async function run(dir: string, script: string): Promise<void> {
  const result = await exec('sh', ['-c', script], { cwd: dir, timeoutMs: 300_000 });
  if (result.exitCode !== 0) throw new Error(`bench workload failed: ${script}\n${result.stderr}`);
}


/**
 * Rows per workload: plain, and traced (kernel caches on, expired at each step) with the ratio in its
 * note; the traced row's goal is plain + 15 %. `cacheTimeoutSeconds: 0` measures without kernel caching.
 */
export async function benchTrace(options: { runs?: number; fuse?: FuseRecorderOptions } = {}): Promise<BenchRow[]> {
  const runs = options.runs ?? 5;
  const base = mkdtempSync(join(tmpdir(), 'strata-bench-trace-'));
  const dir = join(base, 'app');
  mkdirSync(dir);
  populate(dir);
  const rows: BenchRow[] = [];
  try {
    const plain = new Map<string, number>();
    for (const workload of workloads) {
      await run(dir, workload.script); // warm the page cache
      const times: number[] = [];
      for (let i = 0; i < runs; i++) {
        const start = performance.now();
        await run(dir, workload.script);
        times.push(performance.now() - start);
      }
      plain.set(workload.name, median(times));
    }
    const session = await attachFuse({ dir, machinePrefix: '/root/app' }, options.fuse);
    try {
      let step = 0;
      for (const workload of workloads) {
        await run(dir, workload.script);
        const times: number[] = [];
        for (let i = 0; i < runs; i++) {
          const start = performance.now();
          await session.beginStep(++step);
          await run(dir, workload.script);
          await session.endStep();
          times.push(performance.now() - start);
        }
        const plainMs = plain.get(workload.name)!;
        const tracedMs = median(times);
        rows.push({ name: `trace ${workload.name}: plain`, medianMs: plainMs });
        rows.push({ name: `trace ${workload.name}: traced`, medianMs: tracedMs, goalMs: plainMs * 1.15, note: `traced/plain ${(tracedMs / plainMs).toFixed(2)}x` });
      }
    } finally {
      await session.detach();
    }
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
  return rows;
}

// `node --import tsx bench/trace.ts [--no-cache]` prints the rows.
if (import.meta.url === `file://${process.argv[1]}`) {
  const noCache = process.argv.includes('--no-cache');
  const rows = await benchTrace(noCache ? { fuse: { cacheTimeoutSeconds: 0 } } : {});
  for (const row of rows)
    console.log(`${row.name.padEnd(40)} ${row.medianMs.toFixed(1).padStart(9)}${row.goalMs === undefined ? '' : `  (goal ${row.goalMs.toFixed(1)})`}`);
}
