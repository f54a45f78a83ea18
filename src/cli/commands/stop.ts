// `strata stop`: ends the `strata run` that is serving EXPOSE WEBSITE/TCP for a store. That process
// writes its pid to <store>/expose.pid while it serves; stop sends it SIGTERM and waits until it has
// destroyed its machines and exited (it holds the store lock until then).
import { readFileSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { StrataError } from '../../errors.js';
import { isProcessAlive } from '../../util/process.js';
import { storePaths } from '../../compose/engine.js';

export interface StopOptions {
  store?: string | undefined;
}

/** Where a serving `strata run` keeps its pid. */
export function exposePidFile(storeRoot: string): string {
  return join(storeRoot, 'expose.pid');
}

/** Whether the pid still belongs to a strata process (not a newer process that reused the pid). */
function isStrata(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('strata');
  } catch {
    return false;
  }
}

/** How long stop waits for the server to clean up and exit. */
const STOP_WAIT_MS = 60_000;

export async function stopCommand(options: StopOptions): Promise<number> {
  const pidFile = exposePidFile(storePaths(options.store).root);
  const text = await readFile(pidFile, 'utf8').catch(() => null);
  const pid = text === null ? NaN : Number(text.trim());
  if (!Number.isSafeInteger(pid) || pid <= 0) {
    throw new StrataError('STRATA_USAGE', `nothing is being served for this store (no ${pidFile})`);
  }
  if (!isProcessAlive(pid) || !isStrata(pid)) {
    // The server died without cleaning up (kill -9): its machines are reaped by the next open of the store.
    await rm(pidFile, { force: true });
    process.stderr.write(`strata stop: process ${pid} is gone already; removed its stale ${pidFile}\n`);
    return 0;
  }
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + STOP_WAIT_MS;
  while (isProcessAlive(pid)) {
    if (Date.now() > deadline) throw new StrataError('STRATA_USAGE', `process ${pid} did not exit within ${STOP_WAIT_MS / 1000} s of SIGTERM`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  process.stderr.write(`strata stop: stopped process ${pid}\n`);
  return 0;
}

/**
 * The serving half of `strata run` (after a successful run): starts the exposure, prints where each
 * EXPOSE line is served, writes the pid file and waits for SIGINT/SIGTERM (what `strata stop` sends);
 * then cleans up. Returns the exit code of the run: 0 after a normal stop.
 */
export async function serveExposure(
  deps: Pick<import('../../engine/ports.js').EngineDeps, 'snapshots' | 'sandbox'>,
  result: Parameters<typeof import('../../engine/expose.js').startExposure>[1],
  options: { storeRoot: string; previewPort?: number | undefined; secrets?: import('../../engine/secrets.js').Secrets | undefined; json?: boolean | undefined },
): Promise<number> {
  const { exposingLayerfiles, startExposure } = await import('../../engine/expose.js');
  if (exposingLayerfiles(result).length === 0) return 0;
  const { writeFile } = await import('node:fs/promises');
  const say = (line: string): void => void process.stderr.write(`strata: ${line}\n`);
  // Installed before anything starts, so that a stop during the start still cleans up.
  const stopped = new AbortController();
  const onSignal = (): void => stopped.abort();
  process.on('SIGINT', onSignal).on('SIGTERM', onSignal);
  const pidFile = exposePidFile(options.storeRoot);
  let exposure: Awaited<ReturnType<typeof startExposure>> = null;
  try {
    say('starting the machines of EXPOSE WEBSITE/TCP (waiting up to 2 min for the websites to answer)');
    exposure = await startExposure(deps, result, {
      secrets: options.secrets,
      previewPort: options.previewPort,
      signal: stopped.signal,
      onNotice: say,
      onOutput: (runner, _stream, data) => void process.stderr.write(data.replace(/^(?=.)/gm, `[${runner}] `)),
    });
    if (!exposure || stopped.signal.aborted) return 0;
    await writeFile(pidFile, `${process.pid}\n`);
    for (const endpoint of exposure.endpoints) {
      const text = endpoint.kind === 'website'
        ? `preview: ${endpoint.url} -> ${endpoint.runner} ${endpoint.target}`
        : `tcp: ${endpoint.host}:${endpoint.port} -> ${endpoint.runner} :${endpoint.guestPort}`;
      process.stdout.write(options.json ? JSON.stringify({ type: 'expose', ...endpoint }) + '\n' : `${text}\n`);
    }
    say('serving until Ctrl-C or `strata stop`');
    await new Promise<void>((resolve) => stopped.signal.addEventListener('abort', () => resolve(), { once: true }));
    return 0;
  } finally {
    await exposure?.close();
    await rm(pidFile, { force: true });
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
  }
}
