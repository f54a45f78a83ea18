// `strata machine run --from IMAGE -- cmd args...`: one command in a throwaway machine. Opens the store,
// ensures the image, clones it into a temporary active snapshot, starts a machine (outbound network),
// runs the command with its output streamed to the terminal, then destroys the machine, removes the
// snapshot and exits with the command's exit code.
//
// Its machines live under a state root of their own (next to the engine's, named after the same store),
// so a `strata run` reaping its crashed predecessors never kills a `machine run` that is in progress, and
// machine ids carry the owning pid so that leftovers of a crashed `machine run` are reaped by the next
// one without touching those of a concurrent one.
import { createHash, randomBytes } from 'node:crypto';
import { readdir, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { StrataError } from '../../errors.js';
import { snapshotKey, type SnapshotStore } from '../../snapshot/types.js';
import { storePaths } from '../../compose/engine.js';
import { isProcessAlive } from '../../util/process.js';

export interface MachineRunOptions {
  from: string;
  store?: string | undefined;
  memory?: string | undefined;
}

/** Machine ids and active snapshot keys of `machine run` start with this, then `<pid>-`. */
const ownedPrefix = 'machine-run-';

/** Where the runc sandbox of `machine run` keeps its state for a store, and how it names machines. */
export function machineRunSandboxPlace(storeRoot: string): { stateRoot: string; prefix: string } {
  // Same tag as the engine's machines (compose.ts), a different state root and name.
  const storeTag = createHash('sha256').update(storeRoot).digest('hex').slice(0, 8);
  return { stateRoot: join('/run/strata', `${storeTag}-machine-run`), prefix: `strata-${storeTag}-` };
}

/** The arguments as one bash command line: each argument quoted unless it is plainly safe. */
export function shellCommandLine(args: readonly string[]): string {
  return args.map((arg) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`)).join(' ');
}

const MEMORY = /^([0-9]+(?:\.[0-9]+)?)([KMG])(?:I?B)?$/i;
const UNIT_BYTES: Record<string, number> = { K: 1024, M: 1024 ** 2, G: 1024 ** 3 };

/** `512M`, `2G`, `1.5g`, `64MiB` → bytes (binary units, like the Layerfile's MEMORY). */
export function parseMemorySize(text: string): number {
  const match = MEMORY.exec(text.trim());
  const bytes = match ? Math.floor(Number(match[1]) * (UNIT_BYTES[(match[2] ?? '').toUpperCase()] ?? 0)) : 0;
  if (bytes < 1 || !Number.isSafeInteger(bytes)) {
    throw new StrataError('STRATA_USAGE', `invalid memory size ${JSON.stringify(text)}`, { hint: 'write a number and K, M or G, e.g. 512M or 2G' });
  }
  return bytes;
}

/** The pid that owns an id made by `machine run` (`machine-run-<pid>-<random>`), else undefined. */
function ownerPid(id: string): number | undefined {
  const match = new RegExp(`${ownedPrefix}(\\d+)-`).exec(id);
  return match ? Number(match[1]) : undefined;
}

/** Removes machines and active snapshots left by `machine run` processes that are gone (a crash, kill -9). */
async function reapDeadOwners(snapshots: SnapshotStore, stateRoot: string, prefix: string): Promise<void> {
  const { createRuncSandbox } = await import('../../sandbox/runc/index.js');
  const machineNames = await readdir(join(stateRoot, 'machines')).catch(() => [] as string[]);
  const deadPids = new Set<number>();
  for (const name of machineNames) {
    const pid = ownerPid(name);
    if (pid !== undefined && !isProcessAlive(pid)) deadPids.add(pid);
  }
  for (const pid of deadPids) await createRuncSandbox({ prefix: `${prefix}${ownedPrefix}${pid}-`, stateRoot }).reapLeftovers();
  for (const snapshot of await snapshots.list()) {
    const pid = snapshot.kind === 'active' ? ownerPid(snapshot.id) : undefined;
    if (pid !== undefined && snapshot.id.startsWith(ownedPrefix) && !isProcessAlive(pid)) await snapshots.remove(snapshot.id);
  }
}

export async function machineRunCommand(command: readonly string[], options: MachineRunOptions): Promise<number> {
  if (command.length === 0) {
    throw new StrataError('STRATA_USAGE', 'no command given', { hint: 'strata machine run --from vm/debian:12 -- cat /etc/os-release' });
  }
  const memoryBytes = options.memory === undefined ? undefined : parseMemorySize(options.memory);
  const paths = storePaths(options.store);
  const { stateRoot, prefix } = machineRunSandboxPlace(paths.root);
  const { openBtrfsStore } = await import('../../snapshot/btrfs.js');
  const { createRuncSandbox } = await import('../../sandbox/runc/index.js');
  const { ensureImage } = await import('../../images/ensure.js');

  const snapshots = await openBtrfsStore({ root: paths.snapshots });
  const id = `${ownedPrefix}${process.pid}-${randomBytes(3).toString('hex')}`;
  const key = snapshotKey(id);
  // Ctrl-C / SIGTERM end the command; the machine and snapshot are still cleaned up below.
  const interrupt = new AbortController();
  let interruptedBy: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    interruptedBy ??= signal;
    interrupt.abort();
  };
  process.on('SIGINT', onSignal).on('SIGTERM', onSignal);
  try {
    await reapDeadOwners(snapshots, stateRoot, prefix);
    const image = await ensureImage(snapshots, options.from, {
      onProgress: (progress) => process.stderr.write(`strata: ${progress.image}: ${progress.message}\n`),
    });
    const { path: rootfs } = await snapshots.clone(image.snapshot, key);
    try {
      const machine = await createRuncSandbox({ prefix, stateRoot }).start({
        id,
        rootfs,
        hostname: 'strata-machine',
        network: 'outbound',
        ...(memoryBytes !== undefined ? { memoryBytes } : {}),
      });
      try {
        if (interrupt.signal.aborted) return 130;
        const outcome = await machine.exec({
          command: shellCommandLine(command),
          signal: interrupt.signal,
          onOutput: (chunk) => (chunk.stream === 'stdout' ? process.stdout : process.stderr).write(chunk.data),
        });
        if (outcome.oomKilled) process.stderr.write('strata: the machine ran out of memory (a process was OOM-killed)\n');
        if (outcome.exitCode !== null) return outcome.exitCode;
        return interruptedBy === 'SIGTERM' ? 143 : 130;
      } finally {
        await machine.destroy();
      }
    } finally {
      await snapshots.remove(key);
    }
  } finally {
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
    await snapshots.close();
    // The state dirs are empty once the machine is destroyed (unless another machine run is active).
    for (const dir of [join(stateRoot, 'machines'), join(stateRoot, 'runc'), stateRoot]) await rmdir(dir).catch(() => {});
  }
}
