// Small helpers shared by the whole-engine benchmarks: medians, a git repository to commit to, and an
// engine on a temporary store that is removed (unmounted, loop device detached) whatever happens.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openEngine, type Engine } from '../src/compose/engine.js';
import type { Reporter } from '../src/engine/reporter.js';
import { removeStore } from '../test/helpers/store.js';

export function median(values: readonly number[]): number {
  if (values.length === 0) throw new Error('median of no values');
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** "1.2 s" / "340 ms", for notes. */
export function formatShort(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`;
}

export interface BenchRepo {
  dir: string;
  commit(changes: Record<string, string>): void;
  remove(): void;
}

/** A git repository in a temporary directory with one commit of `files`. */
export function benchRepo(files: Record<string, string>): BenchRepo {
  const dir = mkdtempSync(join(tmpdir(), 'strata-bench-repo-'));
  const git = (...args: string[]) => execFileSync('git', args, { cwd: dir, encoding: 'utf8' });
  git('init', '-q', '-b', 'main');
  git('config', 'user.email', 'bench@example.com');
  git('config', 'user.name', 'bench');
  const commit = (changes: Record<string, string>) => {
    for (const [path, content] of Object.entries(changes)) {
      mkdirSync(join(dir, path, '..'), { recursive: true });
      writeFileSync(join(dir, path), content);
    }
    git('add', '-A');
    git('commit', '-q', '--allow-empty', '-m', 'bench');
  };
  commit(files);
  return { dir, commit, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * Runs `body` with a real engine (openEngine) on a fresh temporary store whose reporter is `reporter`;
 * afterwards the engine is closed and the store removed, even when `body` throws.
 */
export async function withEngine<T>(reporter: Reporter, body: (engine: Engine) => Promise<T>): Promise<T> {
  const store = mkdtempSync(join(tmpdir(), 'strata-bench-store-'));
  try {
    const engine = await openEngine({ store, reporter });
    try {
      return await body(engine);
    } finally {
      await engine.close();
    }
  } finally {
    await removeStore(store);
  }
}
