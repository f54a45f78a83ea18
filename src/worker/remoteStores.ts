// The engine's CacheIndex and RunLog on a `strata worker`: every call goes to the server's stores
// (POST /api/worker/store/:port/:method), so every worker plans against every chain the server knows.
import type { CacheIndex, ChainRecord } from '../store/cacheIndex.js';
import type { RunLog, RunRecord } from '../store/runs.js';
import type { SplitTimings } from '../store/splitTimings.js';
import type { WorkerClient } from './client.js';

type Port = 'cacheIndex' | 'runLog' | 'splitTimings';

/** How long a store call is retried while the server (or its database) does not answer. */
export const STORE_RETRY_MS = 60_000;

export function createRemoteStores(client: WorkerClient): { cacheIndex: CacheIndex; runLog: RunLog } {
  // Every method of these ports may be repeated (upserts, idempotent inserts): a call is retried while
  // the server or its database restarts, rather than failing the step that made it.
  const call = async <T>(port: Port, method: string, ...args: unknown[]): Promise<T> =>
    (await client.post<{ result: T }>(`/api/worker/store/${port}/${method}`, { args }, { retryForMs: STORE_RETRY_MS })).result;
  // JSON has no undefined: an absent record comes back as null.
  const orUndefined = <T>(value: T | null): T | undefined => (value === null ? undefined : value);

  const splitTimings: SplitTimings = {
    record: (repo, layerfile, entries, now) => call('splitTimings', 'record', repo, layerfile, entries, now),
    freeze: (repo, layerfile, now) => call('splitTimings', 'freeze', repo, layerfile, now),
    content: async (digest) => orUndefined(await call<string | null>('splitTimings', 'content', digest)),
    has: (digest) => call('splitTimings', 'has', digest),
    pruneUnreferenced: (now, minAgeMs) => call('splitTimings', 'pruneUnreferenced', now, minAgeMs),
  };
  const cacheIndex: CacheIndex = {
    splitTimings,
    candidates: (repo, runner, firstKey, limit) => call('cacheIndex', 'candidates', repo, runner, firstKey, ...(limit === undefined ? [] : [limit])),
    chainOfRun: async (runId, runner) => orUndefined(await call<ChainRecord | null>('cacheIndex', 'chainOfRun', runId, runner)),
    startChain: (chain, now) => call('cacheIndex', 'startChain', chain, now),
    addStep: (chainId, step) => call('cacheIndex', 'addStep', chainId, step),
    completeChain: (chainId) => call('cacheIndex', 'completeChain', chainId),
    referencedSnapshots: async () => new Set(await call<string[]>('cacheIndex', 'referencedSnapshots')),
    pruneChains: (keep) => call('cacheIndex', 'pruneChains', keep),
  };
  const runLog: RunLog = {
    createRun: (run) => call('runLog', 'createRun', run),
    finishRun: (id, status, finishedAt) => call('runLog', 'finishRun', id, status, finishedAt),
    setRunner: (runId, runner) => call('runLog', 'setRunner', runId, runner),
    setStep: (runId, step) => call('runLog', 'setStep', runId, step),
    getRun: async (id) => orUndefined(await call<RunRecord | null>('runLog', 'getRun', id)),
    lastRun: async (repo) => orUndefined(await call<RunRecord | null>('runLog', 'lastRun', repo)),
  };
  return { cacheIndex, runLog };
}
