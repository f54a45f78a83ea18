// Tracing overhead on real workloads inside a real machine: `npm ci` and `tsc -p .` over the fixture
// project (bench/fixtures/ts-project) at /root/app of a vm/debian:12 machine, untraced vs traced by the
// FUSE tracer mounted on /root/app in the machine's mount namespace, as the engine does for a COPY.
// Untraced and traced runs alternate within each round (order swapped every round), so drift of the
// shared host (other work, the network) falls on both sides alike.
//
// A traced run's time covers beginStep + the exec + endStep (cache expiry and collecting the trace are
// part of a step's cost); attaching the tracer is done once per machine by the engine, so it is timed
// apart. Needs root, btrfs-progs, runc, slirp4netns, native/build/strata-tracefs and the network (the
// npm registry, and Debian's archive if vm/debian:12 is not in the host's image cache).
import { existsSync, mkdtempSync, readFileSync, realpathSync } from 'node:fs';
import { copyFile, mkdir, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { ensureImage } from '../src/images/ensure.js';
import { createRuncSandbox } from '../src/sandbox/runc/index.js';
import type { Machine } from '../src/sandbox/types.js';
import { openBtrfsStore } from '../src/snapshot/btrfs.js';
import { snapshotKey, type SnapshotStore } from '../src/snapshot/types.js';
import { FuseRecorder } from '../src/trace/fuse.js';
import type { FuseTraceSession } from '../src/trace/fuse.js';
import type { StepTrace } from '../src/trace/types.js';
import { execOrThrow } from '../src/util/exec.js';
import { writeTsProjectSources } from './fixtures/ts-project/generate.js';
import type { BenchRow } from './types.js';
import { median } from './util.js';

export interface TraceRealOptions {
  /** Measured rounds per workload (each: one untraced and one traced run). Default 3. */
  rounds?: number;
}

const appDir = '/root/app';
const fixtureDir = fileURLToPath(new URL('./fixtures/ts-project/', import.meta.url));
const baseMachineEnv: Record<string, string> = {
  PATH: '/opt/node/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  HOME: '/root',
  npm_config_update_notifier: 'false',
};
/** Where the host's extra CA bundle lands in the machine (see installHostNode). */
const machineCaBundle = '/opt/node/etc/host-ca-certificates.crt';

interface Workload {
  name: string;
  /** Untimed, untraced: brings the app back to the workload's starting state. */
  reset: string;
  command: string;
}

const workloads: Workload[] = [
  // After the untimed warm-up, npm's cache in /root/.npm (outside the traced dir) holds the tarballs:
  // --prefer-offline keeps registry round trips through slirp from dominating what is compared.
  { name: 'npm ci', reset: 'rm -rf node_modules', command: 'npm ci --prefer-offline --no-audit --no-fund' },
  { name: 'tsc -p .', reset: 'rm -rf dist', command: 'node node_modules/typescript/bin/tsc -p .' },
];


/** Runs `command` in /root/app; throws with the output's tail when it fails. */
async function run(machine: Machine, env: Record<string, string>, command: string): Promise<void> {
  let output = '';
  const outcome = await machine.exec({
    command,
    env,
    workdir: appDir,
    timeoutMs: 10 * 60_000,
    onOutput: (chunk) => {
      output = (output + chunk.data.toString('utf8')).slice(-4000);
    },
  });
  if (outcome.exitCode !== 0) {
    throw new Error(`bench trace-real: \`${command}\` failed (exit ${outcome.exitCode}${outcome.timedOut ? ', timed out' : ''}):\n${output}`);
  }
}

/**
 * The host's node binary and npm, copied to /opt/node (same Node as the host; no apt round trip). A
 * host behind a TLS-inspecting proxy trusts its CA through NODE_EXTRA_CA_CERTS: the machine, which
 * reaches the registry through the same network, gets that bundle too (returns the env to add).
 */
async function installHostNode(rootfs: string): Promise<Record<string, string>> {
  const npmCli = realpathSync(join(dirname(process.execPath), 'npm')); // .../node_modules/npm/bin/npm-cli.js
  const npmDir = dirname(dirname(npmCli));
  if (!existsSync(join(npmDir, 'package.json'))) throw new Error(`bench trace-real: cannot find npm next to ${process.execPath}`);
  const optNode = join(rootfs, 'opt', 'node');
  await mkdir(join(optNode, 'bin'), { recursive: true });
  await mkdir(join(optNode, 'lib', 'node_modules'), { recursive: true });
  await copyFile(process.execPath, join(optNode, 'bin', 'node'));
  await execOrThrow('cp', ['-a', npmDir, join(optNode, 'lib', 'node_modules', 'npm')]);
  await symlink('../lib/node_modules/npm/bin/npm-cli.js', join(optNode, 'bin', 'npm'));
  await symlink('../lib/node_modules/npm/bin/npx-cli.js', join(optNode, 'bin', 'npx'));
  const hostCaBundle = process.env.NODE_EXTRA_CA_CERTS;
  if (hostCaBundle === undefined || !existsSync(hostCaBundle)) return {};
  await mkdir(join(rootfs, dirname(machineCaBundle)), { recursive: true });
  await copyFile(hostCaBundle, join(rootfs, machineCaBundle));
  return { NODE_EXTRA_CA_CERTS: machineCaBundle };
}

async function copyFixture(rootfs: string): Promise<void> {
  const target = join(rootfs, 'root', 'app');
  await mkdir(target, { recursive: true });
  for (const file of ['package.json', 'package-lock.json', 'tsconfig.json']) await copyFile(join(fixtureDir, file), join(target, file));
  await writeTsProjectSources(target);
}

/** CPU time (user + system, all threads) a process has used so far, in ms; 10 ms resolution. */
function processCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const clockTicksPerSecond = 100; // USER_HZ, `getconf CLK_TCK`, is 100 on Linux
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicksPerSecond;
}

function describeTrace(trace: StepTrace): string {
  return `trace ${trace.read.length} read, ${trace.statted.length} statted, ${trace.listed.length} listed, ${trace.absent.length} absent, ${trace.written.length} written`;
}

export async function benchTraceReal(options: TraceRealOptions = {}): Promise<BenchRow[]> {
  const rounds = options.rounds ?? 3;
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`bench trace-real: rounds must be a positive integer, got ${rounds}`);
  const base = mkdtempSync(join(tmpdir(), 'strata-bench-trace-real-'));
  const recorder = new FuseRecorder();
  const sandbox = createRuncSandbox({ prefix: `strata-benchtr${process.pid}-`, stateRoot: join(base, 'state') });
  const activeKey = snapshotKey('bench-trace-real');
  let store: SnapshotStore | undefined;
  let machine: Machine | undefined;
  const rows: BenchRow[] = [];
  try {
    store = await openBtrfsStore({ root: join(base, 'store') });
    const image = await ensureImage(store, 'vm/debian:12');
    const { path: rootfs } = await store.clone(image.snapshot, activeKey);
    const env = { ...baseMachineEnv, ...(await installHostNode(rootfs)) };
    await copyFixture(rootfs);
    machine = await sandbox.start({ id: 'trace-real', rootfs, network: 'outbound' });
    const running = machine;

    const attachTimes: number[] = [];
    const timedRun = async (workload: Workload, traced: boolean): Promise<{ ms: number; trace?: StepTrace; daemonCpuMs?: number }> => {
      await run(running, env, workload.reset);
      if (!traced) {
        const start = performance.now();
        await run(running, env, workload.command);
        return { ms: performance.now() - start };
      }
      const attachStart = performance.now();
      const session: FuseTraceSession = await recorder.attach({ dir: appDir, machinePrefix: appDir, mountNamespacePid: running.pid });
      attachTimes.push(performance.now() - attachStart);
      try {
        const daemonPid = session.daemonPid!;
        const cpuBefore = processCpuMs(daemonPid);
        const start = performance.now();
        await session.beginStep(1);
        await run(running, env, workload.command);
        const trace = await session.endStep();
        const ms = performance.now() - start;
        return { ms, trace, daemonCpuMs: processCpuMs(daemonPid) - cpuBefore };
      } finally {
        await session.detach();
      }
    };

    for (const workload of workloads) {
      // Warm-up, untimed: fills npm's cache from the registry and the page cache for both sides.
      await run(running, env, workload.reset);
      await run(running, env, workload.command);
      const untraced: number[] = [];
      const traced: number[] = [];
      const daemonCpu: number[] = [];
      let lastTrace: StepTrace | undefined;
      for (let round = 0; round < rounds; round++) {
        for (const tracedRun of round % 2 === 0 ? [false, true] : [true, false]) {
          const result = await timedRun(workload, tracedRun);
          if (tracedRun) {
            traced.push(result.ms);
            daemonCpu.push(result.daemonCpuMs ?? Number.NaN);
            lastTrace = result.trace;
          } else {
            untraced.push(result.ms);
          }
        }
      }
      const untracedMs = median(untraced);
      const tracedMs = median(traced);
      const perRound = traced.map((ms, i) => (ms / untraced[i]!).toFixed(2)).join('/');
      rows.push({ name: `${workload.name}: untraced`, medianMs: untracedMs, note: `runs ${untraced.map((ms) => ms.toFixed(0)).join('/')} ms` });
      rows.push({
        name: `${workload.name}: traced`,
        medianMs: tracedMs,
        goalMs: untracedMs * 1.15,
        // The fastest runs' ratio too: on a shared host, interference only ever adds time.
        note: `traced/untraced ${(tracedMs / untracedMs).toFixed(2)}x (fastest runs ${(Math.min(...traced) / Math.min(...untraced)).toFixed(2)}x, per round ${perRound}); tracer daemon CPU ${median(daemonCpu).toFixed(0)} ms; ${lastTrace ? describeTrace(lastTrace) : 'no trace'}`,
      });
    }
    rows.push({ name: 'tracer attach on /root/app (once per machine)', medianMs: median(attachTimes) });
    return rows;
  } finally {
    // Each cleanup runs even if an earlier one failed; the store is unmounted before its files go.
    try {
      await machine?.destroy();
      await sandbox.reapLeftovers();
    } finally {
      try {
        if (store) {
          await store.remove(activeKey).catch(() => {});
          await store.close();
        }
      } finally {
        await rm(base, { recursive: true, force: true });
      }
    }
  }
}

// `node --import tsx bench/trace-real.ts [rounds]` prints the rows.
if (import.meta.url === `file://${process.argv[1]}`) {
  const rounds = process.argv[2] === undefined ? undefined : Number(process.argv[2]);
  for (const row of await benchTraceReal(rounds === undefined ? {} : { rounds })) {
    const goal = row.goalMs === undefined ? '' : `  (goal ${row.goalMs.toFixed(0)})`;
    console.log(`${row.name.padEnd(48)} ${row.medianMs.toFixed(1).padStart(9)} ms${goal}${row.note ? `  ${row.note}` : ''}`);
  }
}
