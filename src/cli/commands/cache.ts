// `strata cache prune [--store DIR] [--older-than 7d]`: removes kept CACHE directories and says which.
// It does not take the store's lock (a long-running engine would block it): each cache dir's own lock
// keeps a directory that a run is using from being removed under it.
import { cacheDirsRoot, parseAge, pruneCacheDirs } from '../../engine/cacheDirs.js';
import { storePaths } from '../../compose/engine.js';

export interface CachePruneOptions {
  store?: string;
  olderThan?: string;
}

export async function cachePruneCommand(options: CachePruneOptions, out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const olderThanMs = options.olderThan === undefined ? undefined : parseAge(options.olderThan);
  const now = Date.now();
  const root = cacheDirsRoot(storePaths(options.store).root);
  const result = await pruneCacheDirs(root, { olderThanMs, now });
  for (const removed of result.removed) {
    const lastUsed = removed.lastUsedAt > 0 ? new Date(removed.lastUsedAt).toISOString() : 'unknown';
    out.write(`removed ${removed.path} of ${removed.layerfile} in ${removed.repo} (last used ${lastUsed}): ${removed.dir}\n`);
  }
  for (const busy of result.busy) out.write(`kept ${busy.path} of ${busy.layerfile} in ${busy.repo}: in use by a run\n`);
  if (result.removedThrowaway.length > 0) out.write(`removed ${result.removedThrowaway.length} leftover throwaway director${result.removedThrowaway.length === 1 ? 'y' : 'ies'}\n`);
  const age = options.olderThan === undefined ? '' : ` unused for more than ${options.olderThan}`;
  out.write(`${result.removed.length} cache director${result.removed.length === 1 ? 'y' : 'ies'}${age} removed\n`);
  return 0;
}
