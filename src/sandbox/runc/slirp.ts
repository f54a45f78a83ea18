// Outbound networking for a machine's network namespace through slirp4netns: a user-mode TCP/IP stack
// on a tap device, so the host needs no bridge, no iptables rule, no routing change. Ports bound inside
// stay inside (two machines can both listen on :8080). --disable-host-loopback keeps the machine away
// from services listening on the host's 127.0.0.1.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { StrataError } from '../../errors.js';

/** slirp4netns's fixed addresses in its default 10.0.2.0/24 network. */
export const slirpDns = '10.0.2.3';

export interface Slirp {
  pid: number;
  stop(): Promise<void>;
}

/**
 * Starts slirp4netns on the network namespace of `targetPid` and waits until the tap device is
 * configured. fd 3 is the exit fd: slirp4netns exits by itself when this process (the engine) dies.
 */
export async function startSlirp(targetPid: number, logFile: string, timeoutMs = 5000): Promise<Slirp> {
  const log = openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(
      'slirp4netns',
      ['--configure', '--mtu=65520', '--disable-host-loopback', '--exit-fd=3', '--ready-fd=4', String(targetPid), 'tap0'],
      { stdio: ['ignore', log, log, 'pipe', 'pipe'] },
    );
  } finally {
    closeSync(log);
  }
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const ready = child.stdio[4] as Readable;
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`not ready after ${timeoutMs} ms`)), timeoutMs);
      ready.once('data', () => {
        clearTimeout(timer);
        resolve();
      });
      child.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`exited with ${code} before the network was ready`));
      });
    });
  } catch (error) {
    child.kill('SIGKILL');
    await exited;
    throw new StrataError('STRATA_SANDBOX_START', `slirp4netns: ${(error as Error).message} (log: ${logFile})`, {
      cause: error,
      hint: 'is slirp4netns installed (apt-get install slirp4netns)?',
    });
  }
  ready.destroy();
  if (child.pid === undefined) throw new StrataError('STRATA_SANDBOX_START', 'slirp4netns has no pid');
  return {
    pid: child.pid,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
