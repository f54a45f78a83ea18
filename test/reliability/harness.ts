// Shared pieces of the reliability suite: the CLI as a child process, and a leak check that looks for
// anything a (killed) run of one store could have left on the host.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openEngine } from '../../src/compose/engine.js';
import type { Reporter } from '../../src/engine/reporter.js';
import { exec } from '../../src/util/exec.js';

export const cli = join(import.meta.dirname, '..', 'cli', 'strata.ts');

export interface CliProcess {
  child: ChildProcess;
  /** Everything written to stdout and stderr so far, interleaved. */
  output(): string;
  /** Resolves with the exit code (null when killed by a signal). */
  exited: Promise<number | null>;
  /** Resolves once the output matches (rejects if the process exits first). */
  waitFor(pattern: RegExp | string, timeoutMs?: number): Promise<void>;
}

/** Starts `strata run --plain --store <store> [...extra] <repo>`. */
export function startCliRun(store: string, repoDir: string, extra: string[] = []): CliProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', cli, 'run', '--plain', '--store', store, ...extra, repoDir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  const waiters = new Set<() => void>();
  const onData = (chunk: Buffer): void => {
    text += chunk.toString();
    for (const wake of [...waiters]) wake();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const matches = (pattern: RegExp | string): boolean => (typeof pattern === 'string' ? text.includes(pattern) : pattern.test(text));
  return {
    child,
    output: () => text,
    exited,
    waitFor(pattern, timeoutMs = 120_000) {
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => done(new Error(`timed out waiting for ${String(pattern)}:\n${text}`)), timeoutMs);
        const check = (): void => {
          if (matches(pattern)) done();
        };
        const done = (error?: Error): void => {
          clearTimeout(timer);
          waiters.delete(check);
          if (error) reject(error);
          else resolve();
        };
        waiters.add(check);
        void exited.then(() => {
          if (!matches(pattern)) done(new Error(`the CLI exited before printing ${String(pattern)}:\n${text}`));
        });
        check();
      });
    },
  };
}

/** SIGKILLs the process (if still running) and waits for it to be gone. */
export async function killHard(run: CliProcess): Promise<void> {
  if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill('SIGKILL');
  await run.exited;
}

/** The tag compose.ts names a store's machines and runc state after. */
export function storeTag(store: string): string {
  return createHash('sha256').update(store).digest('hex').slice(0, 8);
}

function processCommandLines(): string[] {
  return readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .map((p) => {
      try {
        return readFileSync(join('/proc', p, 'cmdline'), 'utf8').replaceAll('\0', ' ');
      } catch {
        return '';
      }
    });
}

/**
 * What a closed store left on the host: runc/machine state, processes or cgroups named after the store,
 * mounts inside the store other than its snapshot image, more than one loop device on its image.
 * Empty when clean. Call with no engine open on the store.
 */
export async function findLeaks(store: string): Promise<string[]> {
  const leaks: string[] = [];
  const tag = storeTag(store);
  const machinePrefix = `strata-${tag}-`;
  if (existsSync(join('/run/strata', tag))) leaks.push(`runc/machine state /run/strata/${tag} is left`);
  for (const cmd of processCommandLines()) if (cmd.includes(machinePrefix) || cmd.includes(`/run/strata/${tag}`)) leaks.push(`process left: ${cmd.slice(0, 200)}`);
  for (const controller of ['pids', 'memory', 'freezer']) {
    const root = join('/sys/fs/cgroup', controller);
    if (!existsSync(root)) continue;
    const found = await exec('find', [root, '-maxdepth', '3', '-type', 'd', '-name', `${machinePrefix}*`]);
    for (const dir of found.stdout.split('\n').filter(Boolean)) leaks.push(`cgroup left: ${dir}`);
  }
  const snapshotsMount = join(store, 'snapshots');
  for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const mountpoint = line.split(' ')[1] ?? '';
    if (mountpoint.startsWith(`${store}/`) && mountpoint !== snapshotsMount) leaks.push(`mount left: ${line}`);
  }
  const image = join(store, 'snapshots.img');
  if (existsSync(image)) {
    const loops = (await exec('losetup', ['--noheadings', '--output', 'NAME', '--associated', image])).stdout.split('\n').filter(Boolean);
    if (loops.length > 1) leaks.push(`${loops.length} loop devices on ${image}: ${loops.join(', ')}`);
  }
  return leaks;
}

/** Opens the store the way the CLI does and lists its snapshots that are still active (writable). */
export async function activeSnapshots(store: string, reporter: Reporter = {}): Promise<string[]> {
  const engine = await openEngine({ store, reporter });
  try {
    return (await engine.deps.snapshots.list()).filter((s) => s.kind === 'active').map((s) => s.id);
  } finally {
    await engine.close();
  }
}

/** A reporter that records step statuses and output per `runner#step`. */
export function recordingReporter(): Reporter & { statuses: Map<string, string>; output: Map<string, string>; messages: string[]; reset(): void } {
  const statuses = new Map<string, string>();
  const output = new Map<string, string>();
  const messages: string[] = [];
  return {
    statuses,
    output,
    messages,
    reset() {
      statuses.clear();
      output.clear();
      messages.length = 0;
    },
    onStepStatus(e) {
      statuses.set(`${e.runner}#${e.step}`, e.status);
      if (e.explanation?.message) messages.push(e.explanation.message);
    },
    onStepOutput(e) {
      const key = `${e.runner}#${e.step}`;
      output.set(key, (output.get(key) ?? '') + e.data);
    },
  };
}
