// Preview machines, started on demand and destroyed when idle. A preview is one runner's final state
// in one run: its snapshot cloned to a throwaway active snapshot, a machine on the clone with the RUN
// BACKGROUND commands re-launched and the EXPOSE WEBSITE ports forwarded (src/engine/expose.ts does
// the machine and the routes, as for `strata run`). Requests hold a lease on their preview while they
// are in flight; a preview without leases for `idleMs` is destroyed, and the next request wakes it
// again from the snapshot. Concurrent first requests share one start.
import { randomBytes } from 'node:crypto';
import { startExposedMachine, waitUntilAnswering, websiteRoutes, WEBSITE_WAIT_MS, type ExposedMachine, type WebsiteRoute } from '../../engine/expose.js';
import type { EngineDeps } from '../../engine/ports.js';
import type { Secrets } from '../../engine/secrets.js';
import { StrataError } from '../../errors.js';
import { resolvePreviewSource, type PreviewSourceDeps } from './source.js';

export interface PreviewLease {
  /** The runner's website routes (prefix, rewrite, the 127.0.0.1 port forwarded to the machine). */
  routes: readonly WebsiteRoute[];
  /** The request is done with the preview: its idle time starts when the last lease is released. Idempotent. */
  release(): void;
}

export interface PreviewManager {
  /**
   * The running preview of `runner`'s final state in `runId`, started (or woken) if needed; resolves
   * once its websites answer (or the wait ran out: then they are served anyway). Errors: STRATA_NOT_FOUND
   * (no such run/runner, not successful, no EXPOSE WEBSITE), STRATA_GONE (its snapshot is gone).
   * `secrets` gives the values of SECRET ENV the background commands need; called only when it starts.
   */
  open(runId: string, runner: string, options?: { secrets?: (() => Secrets | Promise<Secrets>) | undefined }): Promise<PreviewLease>;
  /** The previews running now (for tests and status pages). */
  running(): Array<{ runId: string; runner: string; machineId: string }>;
  /** Destroys every preview machine and its snapshot; open() fails afterwards. */
  close(): Promise<void>;
}

export interface PreviewManagerOptions {
  deps: Pick<EngineDeps, 'snapshots' | 'sandbox'> & PreviewSourceDeps;
  idleMs: number;
  /** How long a woken website may take to answer (default WEBSITE_WAIT_MS). */
  waitMs?: number | undefined;
  /** Warnings (a website that did not answer, an ignored EXPOSE line) and the re-launched commands' output. */
  onNotice?: ((line: string) => void) | undefined;
}

interface Running {
  machineId: string;
  exposed: ExposedMachine;
  routes: WebsiteRoute[];
}

interface Entry {
  runId: string;
  runner: string;
  starting: Promise<Running>;
  /** Set once started. */
  running: Running | undefined;
  leases: number;
  idleTimer: NodeJS.Timeout | undefined;
  /** Set once it is being destroyed: open() waits for that, then starts a new one. */
  stopping: Promise<void> | undefined;
}

export function createPreviewManager(options: PreviewManagerOptions): PreviewManager {
  const { deps } = options;
  const entries = new Map<string, Entry>();
  let closed = false;

  const start = async (runId: string, runner: string, secrets: (() => Secrets | Promise<Secrets>) | undefined): Promise<Running> => {
    const source = await resolvePreviewSource(deps, runId, runner);
    // Short, unique ids: the port-forwarding socket path is limited (MachineSpec.portForwarding).
    const machineId = `preview-${randomBytes(4).toString('hex')}`;
    const exposed = await startExposedMachine(deps, {
      id: machineId,
      runner,
      layerfile: source.layerfile,
      instructions: source.instructions,
      snapshot: source.snapshot,
      background: source.background,
      secrets: await secrets?.(),
    });
    try {
      const routes = await websiteRoutes(exposed, { runner, path: source.layerfile, instructions: source.instructions }, [], options.onNotice);
      const waitMs = options.waitMs ?? WEBSITE_WAIT_MS;
      const answered = await Promise.all(routes.map((route) => waitUntilAnswering(route, waitMs, undefined)));
      routes.forEach((route, i) => {
        if (!answered[i]) options.onNotice?.(`preview ${runId}/${runner}: localhost:${route.guestPort} did not answer within ${Math.round(waitMs / 1000)} s; serving it anyway`);
      });
      return { machineId, exposed, routes };
    } catch (error) {
      await exposed.destroy();
      throw error;
    }
  };

  const stop = (key: string, entry: Entry): Promise<void> =>
    (entry.stopping ??= (async () => {
      clearTimeout(entry.idleTimer);
      const running = await entry.starting.catch(() => undefined);
      await running?.exposed.destroy();
      entries.delete(key);
    })());

  const release = (key: string, entry: Entry): void => {
    entry.leases--;
    if (entry.leases > 0 || entry.stopping) return;
    clearTimeout(entry.idleTimer);
    entry.idleTimer = setTimeout(() => {
      if (entry.leases === 0) void stop(key, entry);
    }, options.idleMs);
    // An idle preview alone does not keep the process alive.
    entry.idleTimer.unref();
  };

  return {
    async open(runId, runner, openOptions = {}) {
      const key = JSON.stringify([runId, runner]);
      for (;;) {
        if (closed) throw new StrataError('STRATA_CANCELLED', 'the server is shutting down');
        const existing = entries.get(key);
        if (existing?.stopping) {
          await existing.stopping;
          continue;
        }
        let entry = existing;
        if (!entry) {
          const created: Entry = { runId, runner, starting: start(runId, runner, openOptions.secrets), running: undefined, leases: 0, idleTimer: undefined, stopping: undefined };
          created.starting.then(
            (running) => (created.running = running),
            // A failed start is forgotten at once: the next request tries again (and reports the error again).
            () => {
              if (entries.get(key) === created && !created.stopping) entries.delete(key);
            },
          );
          entries.set(key, created);
          entry = created;
        }
        entry.leases++;
        clearTimeout(entry.idleTimer);
        const leased = entry;
        let running: Running;
        try {
          running = await leased.starting;
        } catch (error) {
          leased.leases--;
          throw error;
        }
        let released = false;
        return {
          routes: running.routes,
          release: () => {
            if (released) return;
            released = true;
            release(key, leased);
          },
        };
      }
    },
    running() {
      return [...entries.values()].flatMap((e) => (e.running && !e.stopping ? [{ runId: e.runId, runner: e.runner, machineId: e.running.machineId }] : []));
    },
    async close() {
      closed = true;
      await Promise.all([...entries].map(([key, entry]) => stop(key, entry)));
    },
  };
}
