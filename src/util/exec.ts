// The one process-management helper: run a program with an argument array (never through a shell),
// capture its output, bound it with a timeout or an AbortSignal. A non-zero exit is a value
// (`exec`), or an exception carrying stderr (`execOrThrow`) for callers that treat failure as a bug.
import { spawn } from 'node:child_process';
import { StrataError } from '../errors.js';
import type { StrataErrorCode } from '../errors.js';

export interface ExecOptions {
  cwd?: string;
  /** Replaces the environment when given (defaults to the caller's environment). */
  env?: NodeJS.ProcessEnv;
  /** Written to stdin, then stdin is closed. Without it stdin is /dev/null. */
  input?: string | Buffer;
  /** Kill the process (SIGKILL) after this many milliseconds; the result then has timedOut: true. */
  timeoutMs?: number;
  /** Kill the process (SIGKILL) when aborted; the result then has canceled: true. */
  signal?: AbortSignal;
  /** Stop capturing after this many bytes per stream (the process keeps running). Default 64 MiB. */
  maxBufferBytes?: number;
}

export interface ExecResult {
  /** Exit code, or null when the process was ended by a signal (or could not be spawned). */
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  canceled: boolean;
  /** Set when the program could not be started at all (e.g. ENOENT). */
  spawnError?: Error;
}

const defaultMaxBuffer = 64 * 1024 * 1024;

/** Runs `file args...` and resolves with its result; never rejects for a failing program. */
export function exec(file: string, args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolve) => {
    const maxBytes = options.maxBufferBytes ?? defaultMaxBuffer;
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outBytes = 0;
    let errBytes = 0;
    let timedOut = false;
    let canceled = false;
    let spawnError: Error | undefined;

    if (options.signal?.aborted) {
      resolve({ exitCode: null, signal: null, stdout: '', stderr: '', timedOut: false, canceled: true });
      return;
    }

    const child = spawn(file, [...args], {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });

    child.stdout?.on('data', (chunk: Buffer) => {
      if (outBytes < maxBytes) out.push(chunk);
      outBytes += chunk.length;
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      if (errBytes < maxBytes) err.push(chunk);
      errBytes += chunk.length;
    });
    if (options.input !== undefined && child.stdin) {
      child.stdin.on('error', () => {}); // the program may exit without reading its input
      child.stdin.end(options.input);
    }

    const timer =
      options.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            child.kill('SIGKILL');
          }, options.timeoutMs);
    const onAbort = (): void => {
      canceled = true;
      child.kill('SIGKILL');
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });

    child.on('error', (error) => {
      spawnError = error;
    });
    // 'close' (not 'exit') so that all output has been read; it also fires after a spawn error.
    child.on('close', (exitCode, signal) => {
      if (timer) clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      const result: ExecResult = {
        exitCode,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        timedOut,
        canceled,
      };
      if (spawnError) result.spawnError = spawnError;
      resolve(result);
    });
  });
}

export interface ExecOrThrowOptions extends ExecOptions {
  /** Error code of the StrataError raised on failure. Default STRATA_INTERNAL. */
  errorCode?: StrataErrorCode;
  hint?: string;
}

/** Like `exec`, but raises a StrataError (with stderr in the message) unless the program exits 0. */
export async function execOrThrow(
  file: string,
  args: readonly string[],
  options: ExecOrThrowOptions = {},
): Promise<ExecResult> {
  const result = await exec(file, args, options);
  if (result.exitCode === 0) return result;
  const command = [file, ...args].join(' ');
  const how = result.spawnError
    ? `could not start: ${result.spawnError.message}`
    : result.timedOut
      ? `timed out after ${options.timeoutMs} ms`
      : result.canceled
        ? 'was canceled'
        : result.signal
          ? `was killed by ${result.signal}`
          : `exited with ${result.exitCode}`;
  const stderr = result.stderr.trim();
  throw new StrataError(options.errorCode ?? 'STRATA_INTERNAL', `${command} ${how}${stderr ? `: ${stderr}` : ''}`, {
    hint: options.hint,
    cause: result.spawnError,
  });
}
