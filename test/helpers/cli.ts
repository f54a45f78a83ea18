// The real `strata` CLI (test/cli/strata.ts: main() on the sources) as a subprocess, for end-to-end tests.
import { spawn, type ChildProcess } from 'node:child_process';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';

const entry = fileURLToPath(new URL('../cli/strata.ts', import.meta.url));

export interface StrataProcess {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<number | null>;
  /** The first match of `pattern` in stdout; rejects after `ms` or when the process ends first. */
  waitFor(pattern: RegExp, ms: number): Promise<RegExpMatchArray>;
}

export interface StrataResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Starts `strata ARGS...`; `input` (if given) is written to its stdin, which is then closed. `wrap`: a
 * command that runs it (e.g. `nsenter --net=...`: in a test host of its own; it execs strata, so
 * signals reach strata itself).
 */
export function startStrata(args: string[], input?: string, options: { wrap?: string[] } = {}): StrataProcess {
  const command = [...(options.wrap ?? []), process.execPath, '--import', 'tsx', entry, ...args];
  const child = spawn(command[0] as string, command.slice(1), { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const listeners = new Set<() => void>();
  child.stdout?.on('data', (d: Buffer) => {
    stdout += d.toString();
    for (const listener of listeners) listener();
  });
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  if (input !== undefined) child.stdin?.end(input);
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    waitFor: (pattern, ms) =>
      new Promise((resolve, reject) => {
        const done = (settle: () => void): void => {
          clearTimeout(timer);
          listeners.delete(check);
          settle();
        };
        const check = (): void => {
          const match = pattern.exec(stdout);
          if (match) done(() => resolve(match));
        };
        const timer = setTimeout(() => done(() => reject(new Error(`no ${pattern} within ${ms} ms\nstdout: ${stdout}\nstderr: ${stderr}`))), ms);
        void exited.then((code) => done(() => reject(new Error(`strata exited (${code}) before printing ${pattern}\nstdout: ${stdout}\nstderr: ${stderr}`))));
        listeners.add(check);
        check();
      }),
  };
}

/** Runs `strata ARGS...` to its end. */
export function runStrata(args: string[], input?: string): Promise<StrataResult> {
  return resultOf(startStrata(args, input));
}

async function resultOf(strata: StrataProcess): Promise<StrataResult> {
  const code = await strata.exited;
  return { code, stdout: strata.stdout(), stderr: strata.stderr() };
}

/**
 * Stops (SIGTERM, then SIGKILL after 60 s) the tracked strata processes still running after the test,
 * whatever happened. Register before temporaryStore: after-hooks run in registration order, and a
 * process must be gone before its store is unmounted.
 */
export function stopAfterTest(t: TestContext): {
  track(strata: StrataProcess): StrataProcess;
  /** runStrata, tracked. */
  run(args: string[], input?: string): Promise<StrataResult>;
} {
  const tracked: StrataProcess[] = [];
  t.after(async () => {
    for (const strata of tracked) {
      if (strata.child.exitCode !== null || strata.child.signalCode !== null) continue;
      strata.child.kill('SIGTERM');
      const timer = setTimeout(() => strata.child.kill('SIGKILL'), 60_000);
      await strata.exited;
      clearTimeout(timer);
    }
  });
  const track = (strata: StrataProcess): StrataProcess => (tracked.push(strata), strata);
  return { track, run: (args, input) => resultOf(track(startStrata(args, input))) };
}

/** One line of `strata run --json` (the fields tests look at; every event has `type`). */
export interface JsonEvent {
  type: string;
  runner?: string;
  step?: number;
  status?: string;
  durationMs?: number;
  data?: string;
  stream?: string;
  explanation?: { message?: string };
  runners?: Array<{ runner: string; layerfile?: string; level?: number; steps: Array<{ index: number; line: number; text: string }> }>;
  [key: string]: unknown;
}

/** Every stdout line of `strata run --json` parsed (a line that is not JSON fails the test). */
export function jsonEvents(stdout: string): JsonEvent[] {
  return stdout
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => {
      try {
        return JSON.parse(line) as JsonEvent;
      } catch {
        throw new Error(`not a JSON line in --json output: ${line}`);
      }
    });
}
