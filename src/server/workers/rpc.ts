// What a `strata worker`'s engine asks of the server's stores: the cache index, the run log and the
// strata-split timings, method by method (workers hold no database credentials). Each call is
// `{ args: [...] }` in, `{ result }` out, through the same ports the server's own engine uses; Sets
// travel as arrays. The method lists are the whole surface: nothing else of the database is reachable.
import { StrataError } from '../../errors.js';
import type { CacheIndex } from '../../store/cacheIndex.js';
import type { RunLog } from '../../store/runs.js';

export const RPC_METHODS = {
  cacheIndex: ['candidates', 'chainOfRun', 'startChain', 'addStep', 'completeChain', 'referencedSnapshots', 'pruneChains'],
  runLog: ['createRun', 'finishRun', 'setRunner', 'setStep', 'getRun', 'lastRun'],
  splitTimings: ['record', 'freeze', 'content', 'has', 'pruneUnreferenced'],
} as const;

export type RpcPort = keyof typeof RPC_METHODS;

export interface RpcTargets {
  cacheIndex: CacheIndex;
  runLog: RunLog;
}

/** Calls `port.method(...args)` on the server's stores; its result as JSON can carry it. */
export async function callStore(targets: RpcTargets, port: string, method: string, args: unknown[]): Promise<unknown> {
  const methods: readonly string[] | undefined = Object.hasOwn(RPC_METHODS, port) ? (RPC_METHODS as Record<string, readonly string[]>)[port] : undefined;
  if (!methods?.includes(method)) throw new StrataError('STRATA_NOT_FOUND', `no store method ${port}.${method}`);
  const target = (port === 'splitTimings' ? targets.cacheIndex.splitTimings : targets[port as 'cacheIndex' | 'runLog']) as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
  // JSON has no undefined: a null argument stands for an absent one (no method takes null itself).
  const result = await (target[method] as (...a: unknown[]) => Promise<unknown>).apply(target, args.map((arg) => (arg === null ? undefined : arg)));
  return result instanceof Set ? [...result] : result;
}
