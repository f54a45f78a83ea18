// A real engine (btrfs store on a loop image, runc machines, FUSE tracing, SQLite) in a temporary
// store, with a reporter that records every event. Cleans up (unmount, detach, delete) after the test.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { TestContext } from 'node:test';
import { openEngine, type Engine } from '../../src/compose/engine.js';
import type { Reporter, StepStatus } from '../../src/engine/reporter.js';
import { runRepository, type RunOptions, type RunResult } from '../../src/engine/runRepository.js';

export interface RecordedStep {
  runner: string;
  step: number;
  status: StepStatus;
  message?: string | undefined;
}

export interface TestEngine {
  engine: Engine;
  store: string;
  /** Runs the repo and returns the result plus, per runner, the final status of each step and its output. */
  run(options: RunOptions): Promise<{ result: RunResult; steps: RecordedStep[]; output: Map<string, string>; ran: string[] }>;
}

export async function createTestEngine(t: TestContext): Promise<TestEngine> {
  const store = mkdtempSync(join(tmpdir(), 'strata-e2e-store-'));
  let current: { steps: Map<string, RecordedStep>; output: Map<string, string> } = { steps: new Map(), output: new Map() };
  const reporter: Reporter = {
    onStepStatus(e) {
      const key = `${e.runner}#${e.step}`;
      const message = e.explanation?.message ?? current.steps.get(key)?.message;
      current.steps.set(key, { runner: e.runner, step: e.step, status: e.status, message });
    },
    onStepOutput(e) {
      const key = `${e.runner}#${e.step}`;
      current.output.set(key, (current.output.get(key) ?? '') + e.data);
    },
  };
  let engine: Engine | undefined;
  t.after(async () => {
    await engine?.close().catch(() => {});
    rmSync(store, { recursive: true, force: true });
  });
  engine = await openEngine({ store, reporter });
  const opened = engine;
  return {
    engine: opened,
    store,
    async run(options) {
      current = { steps: new Map(), output: new Map() };
      const result = await runRepository(options, opened.deps);
      const steps = [...current.steps.values()].sort((a, b) => a.runner.localeCompare(b.runner) || a.step - b.step);
      const ran = steps.filter((s) => s.status === 'done' || s.status === 'failed' || s.status === 'running').map((s) => `${s.runner}#${s.step}`);
      return { result, steps, output: current.output, ran };
    },
  };
}

/** A git repository in a temp dir with helpers to write files and commit. */
export function createGitRepo(t: TestContext, files: Record<string, string>) {
  const dir = mkdtempSync(join(tmpdir(), 'strata-e2e-repo-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const git = (...args: string[]) => execFileSync('git', args, { cwd: dir, encoding: 'utf8' });
  git('init', '-q', '-b', 'main');
  git('config', 'user.email', 'e2e@example.com');
  git('config', 'user.name', 'e2e');
  const write = (changes: Record<string, string | null>) => {
    for (const [path, content] of Object.entries(changes)) {
      const full = join(dir, path);
      if (content === null) rmSync(full, { recursive: true, force: true });
      else {
        mkdirSync(dirname(full), { recursive: true });
        writeFileSync(full, content);
      }
    }
  };
  const commit = (message: string, changes: Record<string, string | null> = {}) => {
    write(changes);
    git('add', '-A');
    git('commit', '-q', '--allow-empty', '-m', message);
    return git('rev-parse', 'HEAD').trim();
  };
  commit('initial', files);
  return { dir, git, write, commit };
}

/** The runner id of a repository's root Layerfile. */
export const ROOT_RUNNER = 'main-layerfile';
export type TestRun = Awaited<ReturnType<TestEngine['run']>>;
export type TestRepo = ReturnType<typeof createGitRepo>;

/** How a step appears in a run's `ran` list: `<runner>#<step index>`. */
export const stepId = (step: number, runner = ROOT_RUNNER): string => `${runner}#${step}`;
/** Step ids `from`..`to` (both included) of one runner. */
export const stepIds = (from: number, to: number, runner = ROOT_RUNNER): string[] => Array.from({ length: to - from + 1 }, (_, i) => stepId(from + i, runner));
