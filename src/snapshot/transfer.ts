// Snapshots travel between machines as `btrfs send` streams compressed with zstd: full, or incremental
// from a parent the receiving side holds. The receiving side `btrfs receive`s into a staging directory
// of its store and commits the result as an ordinary read-only snapshot (never making the received
// subvolume writable: that would drop its received UUID, by which later incremental streams find it).
//
// How btrfs matches an incremental stream to its parent: the stream names the parent by the parent's
// received UUID when it has one (it was itself received), else by its own UUID; `btrfs receive` looks
// for a subvolume whose received UUID is that, else whose own UUID is. Read-only snapshots keep the
// received UUID of their source, writable ones do not. So a snapshot keeps one identity across every
// machine it travels to, and a snapshot made locally on top of a received one (clone, change, commit)
// can be sent back incrementally to the machine it came from.
//
// Integrity: a receive commits only when the input, zstd -d and btrfs receive all finished cleanly.
// The zstd frame's checksum catches truncation and corruption; btrfs receive (progs >= 6.2 checked)
// also refuses a stream that ends before its end command ("unexpected EOF in stream") and checks each
// command's crc32c. A failed receive leaves a half-made writable subvolume: the staging directory goes
// with it.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { StrataError } from '../errors.js';
import { assertSnapshotId, type BtrfsSnapshotStore, type SnapshotInfo, type SnapshotName } from './types.js';

export interface SendOptions {
  /** A committed snapshot the receiving side holds: the stream then carries only the difference. */
  parent?: SnapshotName;
}

export interface ReceiveOptions {
  /** Recorded as the new snapshot's parent (informational, as in commit); must be in the store. */
  parent?: SnapshotName;
}

// --compressed-data sends extents that btrfs stored compressed as they are (send protocol 2, kernel and
// btrfs-progs >= 6.0), instead of decompressing them for zstd to compress again; without compressed
// extents it changes nothing. zstd -3 on all cores: a stream compresses faster than disks write.
const sendArgs = ['-q', 'send', '--compressed-data'];
const compress = { file: 'zstd', args: ['-q', '-c', '-3', '-T0'] };
const decompress = { file: 'zstd', args: ['-q', '-d', '-c'] };

/**
 * The zstd-compressed `btrfs send` stream of committed snapshot `name` (incremental from `parent`).
 * The stream errors (STRATA_SNAPSHOT) if btrfs send or zstd fails, and only ends once both finished
 * cleanly. Destroying it stops both.
 */
export async function sendSnapshot(store: BtrfsSnapshotStore, name: SnapshotName, options: SendOptions = {}): Promise<Readable> {
  const what = `send snapshot ${JSON.stringify(name)}${options.parent === undefined ? '' : ` (incremental from ${JSON.stringify(options.parent)})`}`;
  const source = await committedPath(store, name, what);
  const parent = options.parent === undefined ? [] : ['-p', await committedPath(store, options.parent, what)];
  const pipeline = startPipeline([{ file: 'btrfs', args: [...sendArgs, ...parent, source] }, compress]);
  const output = new PassThrough();
  pipeline.output.pipe(output, { end: false });
  pipeline.finished.then(
    () => output.end(),
    (error: unknown) => output.destroy(new StrataError('STRATA_SNAPSHOT', `could not ${what}: ${message(error)}`, { cause: error })),
  );
  output.on('close', () => pipeline.stop());
  return output;
}

/**
 * Applies a stream from `sendSnapshot` as committed snapshot `name`: all of it, or nothing (a failed,
 * truncated or corrupt stream leaves no snapshot and no staging leftovers, and rejects with
 * STRATA_SNAPSHOT). An incremental stream needs its parent in this store: a snapshot received from the
 * same origin, or the origin's own snapshot sent back.
 */
export async function receiveSnapshot(
  store: BtrfsSnapshotStore,
  name: SnapshotName,
  stream: Readable,
  options: ReceiveOptions = {},
): Promise<SnapshotInfo> {
  const what = `receive snapshot ${JSON.stringify(name)}`;
  assertSnapshotId(name, 'name');
  if (await store.has(name)) {
    stream.destroy();
    throw new StrataError('STRATA_SNAPSHOT', `could not ${what}: snapshot ${JSON.stringify(name)} already exists in ${store.root}`);
  }
  if (options.parent !== undefined) await committedPath(store, options.parent, what);
  const staging = await store.makeStagingDir();
  let storeFull = false;
  try {
    const pipeline = startPipeline([decompress, { file: 'btrfs', args: ['-q', 'receive', '-e', staging] }], stream);
    pipeline.output.resume();
    await pipeline.finished;
    return await store.commitReceived(await receivedSubvolume(staging), name, options.parent);
  } catch (error) {
    stream.destroy();
    const failure = receiveError(what, error);
    storeFull = failure.code === 'STRATA_STORE_FULL';
    throw failure;
  } finally {
    // After filling the store, wait until the half-made snapshot's space is back: the store stays usable.
    await store.removeStagingDir(staging, { waitForSpace: storeFull });
  }
}

async function committedPath(store: BtrfsSnapshotStore, name: SnapshotName, what: string): Promise<string> {
  const info = await store.stat(name);
  if (info.kind !== 'committed') {
    throw new StrataError('STRATA_SNAPSHOT', `could not ${what}: ${JSON.stringify(name)} is an active snapshot; only committed ones travel`, {
      hint: 'commit it first',
    });
  }
  return store.path(name);
}

/** The one subvolume a receive made in its staging directory. */
async function receivedSubvolume(staging: string): Promise<string> {
  const entries = await readdir(staging);
  if (entries.length !== 1) throw new Error(`expected one received subvolume in ${staging}, found ${entries.length}`);
  return join(staging, entries[0]!);
}

function receiveError(what: string, error: unknown): StrataError {
  if (error instanceof StrataError && error.code === 'STRATA_STORE_FULL') return error;
  const text = message(error);
  if (/No space left on device|ENOSPC/.test(text)) {
    return new StrataError('STRATA_STORE_FULL', `could not ${what}: the snapshot store is full (no space left on device)`, {
      cause: error,
      hint: 'free space (strata cache prune, or remove old stores), or give the store a bigger image',
    });
  }
  const hint = /cannot find parent subvolume/i.test(text)
    ? 'an incremental stream applies only where its parent snapshot is: receive the parent first, or send this one in full'
    : undefined;
  return new StrataError('STRATA_SNAPSHOT', `could not ${what}: ${text}`, { cause: error, hint });
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

interface Command {
  file: string;
  args: readonly string[];
}

interface Pipeline {
  /** The last command's stdout. */
  output: Readable;
  /** Resolves when every command exited 0 (and the input, if any, ended without error); else rejects saying which failed and why. */
  finished: Promise<void>;
  /** Kills the commands still running (after a failure, or when the output is no longer wanted). */
  stop(): void;
}

const maxStderrBytes = 16 * 1024;

/** Runs `commands` with each one's stdout piped into the next one's stdin; `input` feeds the first. */
function startPipeline(commands: readonly Command[], input?: Readable): Pipeline {
  const children = commands.map((command, index) =>
    spawn(command.file, [...command.args], { stdio: [index === 0 && input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] }),
  );
  const stop = (): void => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  };
  children.forEach((child, index) => {
    child.stdin?.on('error', () => {}); // EPIPE when the command exits early: its exit status says why
    const next = children[index + 1];
    if (next?.stdin) child.stdout!.pipe(next.stdin);
  });
  let inputFailure: unknown;
  if (input !== undefined) {
    input.on('error', (error) => {
      inputFailure ??= error;
      stop();
    });
    input.pipe(children[0]!.stdin!);
  }
  const exits = children.map((child, index) => exitOf(child, commands[index]!));
  const finished = Promise.all(exits).then((failures) => {
    const reasons = [...(inputFailure === undefined ? [] : [`the input failed: ${message(inputFailure)}`]), ...failures.filter((f) => f !== undefined)];
    if (reasons.length > 0) throw new Error(reasons.join('; '), { cause: inputFailure });
  });
  // Any command failing stops the others, so none waits forever on a pipe nobody serves.
  for (const exit of exits) void exit.then((failure) => failure !== undefined && stop());
  return { output: children.at(-1)!.stdout!, finished, stop };
}

/** Resolves with undefined when the command exited 0, else with why it did not (its stderr included). */
function exitOf(child: ChildProcess, command: Command): Promise<string | undefined> {
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    if (stderr.length < maxStderrBytes) stderr += chunk.toString();
  });
  let spawnError: Error | undefined;
  child.on('error', (error) => (spawnError = error));
  return new Promise((resolve) => {
    child.on('close', (code, signal) => {
      if (code === 0) return resolve(undefined);
      const how = spawnError ? `could not start (${spawnError.message})` : signal ? `was killed by ${signal}` : `exited with ${code}`;
      const detail = stderr.trim();
      resolve(`${[command.file, ...command.args].join(' ')} ${how}${detail ? `: ${detail}` : ''}`);
    });
  });
}
