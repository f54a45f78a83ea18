// TraceRecorder backed by native/build/strata-tracefs: a FUSE filesystem mounted over the traced
// directory that serves the directory's own contents and records every touch (see
// native/tracefs/tracefs.c). We talk to it over its stdin/stdout, one line per command and reply.
import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { StrataError } from '../errors.js';
import { hasOwnUserNamespace } from '../util/process.js';
import { exec } from '../util/exec.js';
import type { StepTrace } from './types.js';
import type { AttachOptions, TraceRecorder, TraceSession } from './recorder.js';
import { normalizeStepTrace } from './recorder.js';

export interface FuseRecorderOptions {
  /** Path of the strata-tracefs binary; defaults to native/build/strata-tracefs of this checkout. */
  binaryPath?: string;
  /** Kernel entry/attr cache timeout in seconds (0 disables kernel caching; for measurements). */
  cacheTimeoutSeconds?: number;
  /** Milliseconds to wait for the daemon to answer a command. */
  commandTimeoutMs?: number;
}

/** Where `make -C native` puts the binary, from src/trace/ (tsx) or dist/src/trace/ (compiled). */
export function defaultTracefsBinary(): string {
  const candidates = ['../../native/build/strata-tracefs', '../../../native/build/strata-tracefs'].map((rel) =>
    fileURLToPath(new URL(rel, import.meta.url)),
  );
  return candidates.find((path) => existsSync(path)) ?? candidates[0]!;
}

export class FuseRecorder implements TraceRecorder {
  constructor(private readonly options: FuseRecorderOptions = {}) {}

  attach(opts: AttachOptions): Promise<FuseTraceSession> {
    return attachFuse(opts, this.options);
  }
}

export function createFuseRecorder(options: FuseRecorderOptions = {}): FuseRecorder {
  return new FuseRecorder(options);
}

const traceKeys = ['read', 'listed', 'statted', 'absent', 'written'] as const;

function parseTrace(json: string): StepTrace {
  const raw: unknown = JSON.parse(json);
  if (typeof raw !== 'object' || raw === null) throw new Error('trace is not an object');
  const record = raw as Record<string, unknown>;
  const lists = traceKeys.map((key) => {
    const list = record[key];
    if (!Array.isArray(list) || !list.every((p) => typeof p === 'string')) throw new Error(`trace.${key} is not a string list`);
    return list as string[];
  });
  const [read, listed, statted, absent, written] = lists as [string[], string[], string[], string[], string[]];
  return normalizeStepTrace({ read, listed, statted, absent, written });
}

export async function attachFuse(opts: AttachOptions, options: FuseRecorderOptions = {}): Promise<FuseTraceSession> {
  const binary = options.binaryPath ?? defaultTracefsBinary();
  if (!existsSync(binary)) {
    throw new StrataError('STRATA_TRACE', `the tracing filesystem helper is not built: ${binary} is missing`, {
      hint: 'run scripts/install.sh (it builds the native helpers with `make -C native`)',
    });
  }
  const args = ['--dir', opts.dir, '--prefix', opts.machinePrefix];
  if (opts.mountNamespacePid !== undefined) args.push('--mount-ns', `/proc/${opts.mountNamespacePid}/ns/mnt`);
  // A system machine (own user namespace, idmapped root): the daemon must work as the machine's root.
  if (opts.mountNamespacePid !== undefined && hasOwnUserNamespace(opts.mountNamespacePid)) args.push('--user-ns', `/proc/${opts.mountNamespacePid}/ns/user`);
  if (options.cacheTimeoutSeconds !== undefined) args.push('--timeout', String(options.cacheTimeoutSeconds));
  const child = spawn(binary, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const session = new FuseSession(child, opts, options.commandTimeoutMs ?? 60_000);
  try {
    return await session.started();
  } catch (error) {
    await session.detach(); // kills it if needed and removes a mount it may have left
    throw error;
  }
}

type Waiter = { resolve: (line: string) => void; reject: (error: Error) => void };

/** A FUSE trace session; `daemonPid` is exposed for diagnostics and tests (fd counts, ps). */
export interface FuseTraceSession extends TraceSession {
  readonly daemonPid: number | undefined;
}

class FuseSession implements FuseTraceSession {
  private readonly waiters: Waiter[] = [];
  private stderr = '';
  private exited: Promise<void>;
  private hasExited = false;
  private detached = false;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly child: ChildProcessWithoutNullStreams,
    private readonly opts: AttachOptions,
    private readonly commandTimeoutMs: number,
  ) {
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      if (this.stderr.length < 64 * 1024) this.stderr += chunk;
    });
    child.stdin.on('error', () => {}); // EPIPE after the daemon died: reported through `exited`
    createInterface({ input: child.stdout }).on('line', (line) => this.waiters.shift()?.resolve(line));
    this.exited = new Promise((resolve) => {
      const onGone = (error?: Error): void => {
        this.hasExited = true;
        const reason = this.failure('the tracing filesystem exited', error);
        for (const waiter of this.waiters.splice(0)) waiter.reject(reason);
        resolve();
      };
      child.once('close', () => onGone()); // after stdout/stderr are drained
      child.once('error', (error) => onGone(error));
    });
  }

  get daemonPid(): number | undefined {
    return this.child.pid;
  }

  /** Waits for the daemon's `ready` (it is mounted). */
  async started(): Promise<this> {
    const line = await this.nextLine();
    if (line !== 'ready') throw this.failure(`unexpected first line from the tracing filesystem: ${line}`);
    return this;
  }

  beginStep(step: number): Promise<void> {
    if (!Number.isInteger(step) || step < 0) throw new StrataError('STRATA_TRACE', `invalid step number: ${step}`);
    return this.command(`step ${step}`, (line) => {
      if (line !== `ok step ${step}`) throw this.failure(`unexpected reply to step: ${line}`);
    });
  }

  endStep(): Promise<StepTrace> {
    return this.command('end', (line) => {
      if (!line.startsWith('trace ')) throw this.failure(`unexpected reply to end: ${line.slice(0, 200)}`);
      try {
        return parseTrace(line.slice('trace '.length));
      } catch (cause) {
        throw this.failure('the tracing filesystem sent a malformed trace', cause);
      }
    });
  }

  async detach(): Promise<void> {
    if (this.detached) return;
    this.detached = true;
    if (!this.hasExited) {
      this.child.stdin.end('exit\n');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 5_000);
      await this.exited;
      clearTimeout(timer);
    }
    // A killed daemon leaves a dead mount behind: remove it (host namespace only; a machine's
    // namespace goes away with the machine).
    if (this.opts.mountNamespacePid === undefined && isTracefsMounted(this.opts.dir)) {
      await exec('umount', ['-l', this.opts.dir], { timeoutMs: 10_000 });
    }
  }

  /** Runs one command at a time: replies come back in order on one stream. */
  private command<T>(text: string, onReply: (line: string) => T): Promise<T> {
    const run = async (): Promise<T> => {
      if (this.detached || this.hasExited) throw this.failure(`cannot send "${text}": the tracing session is over`);
      const reply = this.nextLine();
      this.child.stdin.write(`${text}\n`);
      return onReply(await reply);
    };
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => {});
    return result;
  }

  private nextLine(): Promise<string> {
    return new Promise((resolve, reject) => {
      if (this.hasExited) {
        reject(this.failure('the tracing filesystem exited'));
        return;
      }
      const timer = setTimeout(() => {
        const index = this.waiters.indexOf(waiter);
        if (index >= 0) this.waiters.splice(index, 1);
        reject(this.failure(`the tracing filesystem did not answer within ${this.commandTimeoutMs} ms`));
      }, this.commandTimeoutMs);
      const waiter: Waiter = {
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      this.waiters.push(waiter);
    });
  }

  private failure(message: string, cause?: unknown): StrataError {
    const detail = this.stderr.trim();
    return new StrataError('STRATA_TRACE', `${message} (dir ${this.opts.dir})${detail ? `: ${detail}` : ''}`, {
      hint: 'the tracer needs root, /dev/fuse and fuse3 (run scripts/install.sh)',
      cause,
    });
  }
}

/** Whether a strata-tracefs mount sits at `dir` in this process's mount namespace. */
export function isTracefsMounted(dir: string): boolean {
  const escaped = dir.replace(/[ \t\n\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .some((line) => {
      const [, mountpoint, type] = line.split(' ');
      return mountpoint === escaped && type === 'fuse.strata-tracefs';
    });
}
