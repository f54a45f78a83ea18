// CLONE: a COPY whose sources come from another git repository (src/source/remote.ts fetches it).
//
// The planner knows one source space of repo-relative paths. A cloned repository's paths enter it under
// a namespace, `.git/clone/<id>/<path>` (<id> from the CLONE's url and DEFAULT=, so every CLONE line that
// resolves the same way shares it); git never stores a `.git` path, so the namespace cannot collide
// with the repository's own files, and a `COPY . x` does not map it (plan/paths.ts). A CLONE's
// CopyRecords have namespaced sources, so the planner maps a changed remote file through them like a
// changed repo file: the steps that observed it rerun, the others are restored and get it re-applied.
//
// A chain remembers each remote's tree (chains.clones); the next run diffs that tree against the
// remote's new one, in the remote's cache repository, and adds those changes (namespaced) to the main
// repository's. Every remote the Layerfile clones is fetched before planning, so a changed remote is
// seen even when every step would otherwise be cached.
import { createHash } from 'node:crypto';
import { StrataError } from '../errors.js';
import type { Instruction } from '../layerfile/types.js';
import { CLONE_SOURCE_PREFIX } from '../plan/paths.js';
import type { CopyRecord, ReapplyEntry, SourceChange } from '../plan/types.js';
import { diffTrees, type TreeId } from '../source/git.js';
import { normalizeRemoteUrl, type RemoteCache, type ResolvedRemote } from '../source/remote.js';
import type { ChainClone } from '../store/cacheIndex.js';
import { copyIntoMachine, reapplyChanges } from './copy.js';

export type { ChainClone } from '../store/cacheIndex.js';

/** Git's empty tree: diffing against it lists every path of the other tree as deleted. */
const EMPTY_TREE = '4b825dc642cb6eb9a060e54bf8d69288fbee4904' as TreeId;

/** The source-path namespace of a CLONE line, e.g. '.git/clone/1a2b3c4d5e6f'. */
export function cloneNamespace(url: string, defaultBranch: string | undefined): string {
  const id = createHash('sha256').update(`${url}\n${defaultBranch ?? ''}`).digest('hex').slice(0, 12);
  return CLONE_SOURCE_PREFIX + id;
}

/** `path` of the cloned repository as a planner source path. */
export function namespacedPath(namespace: string, path: string): string {
  return path === '' ? namespace : `${namespace}/${path}`;
}

type CloneInstruction = Extract<Instruction, { kind: 'clone' }>;

export interface CloneContext {
  remotes: RemoteCache | undefined;
  /** One object per run: remotes are fetched once per run, so all Layerfiles of a run agree. */
  run: object;
  /** The repository being built: relative URLs are relative to it, its branch picks the remote's. */
  repoDir: string;
  branch: string;
  layerfilePath: string;
}

const fetchedByRun = new WeakMap<object, Map<string, Promise<ResolvedRemote>>>();

function requireRemotes(context: CloneContext, instruction: CloneInstruction): RemoteCache {
  if (context.remotes) return context.remotes;
  throw new StrataError('STRATA_ENGINE', `${context.layerfilePath}:${instruction.range.line}: CLONE needs a remote cache, and this engine has none`, {
    hint: 'the composition file must give the engine `remotes` (src/source/remote.ts)',
  });
}

/**
 * Fetches every remote the Layerfile's CLONE lines name and returns what this run's machine will hold:
 * `inherited` (the parent Layerfile's clones) plus one entry per new namespace. A remote that cannot be
 * fetched, or has no branch to clone, fails with the CLONE's file:line.
 */
export async function resolveClones(context: CloneContext, instructions: readonly Instruction[], inherited: readonly ChainClone[]): Promise<ChainClone[]> {
  const clones = [...inherited];
  let fetched = fetchedByRun.get(context.run);
  if (!fetched) fetchedByRun.set(context.run, (fetched = new Map()));
  for (const instruction of instructions) {
    if (instruction.kind !== 'clone') continue;
    const namespace = cloneNamespace(instruction.url, instruction.defaultBranch);
    if (clones.some((c) => c.namespace === namespace)) continue;
    const remotes = requireRemotes(context, instruction);
    const url = normalizeRemoteUrl(instruction.url, context.repoDir);
    const key = `${url}\n${instruction.defaultBranch ?? ''}`;
    let resolving = fetched.get(key);
    if (!resolving) {
      resolving = remotes.resolve(url, { sameAs: context.branch, defaultBranch: instruction.defaultBranch });
      fetched.set(key, resolving);
    }
    try {
      const remote = await resolving;
      clones.push({ namespace, url, branch: remote.branch, commit: remote.commit, tree: remote.tree });
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new StrataError('STRATA_ENGINE', `${context.layerfilePath}:${instruction.range.line}: CLONE ${instruction.url} failed: ${reason}`, {
        hint: error instanceof StrataError ? error.hint : undefined,
        cause: error,
      });
    }
  }
  return clones;
}

/**
 * What changed in the cloned repositories between a cached chain and this run, as namespaced source
 * changes. A remote the chain did not record counts as entirely new; one it recorded that this run does
 * not clone counts as entirely deleted. Null when the chain's trees cannot be compared (its cache
 * repository is gone): the chain is then not a safe candidate.
 */
export async function cloneChanges(remotes: RemoteCache | undefined, recorded: readonly ChainClone[] | undefined, current: readonly ChainClone[]): Promise<SourceChange[] | null> {
  const before = recorded ?? [];
  if (before.length === 0 && current.length === 0) return [];
  if (!remotes) return null;
  const changes: SourceChange[] = [];
  try {
    for (const now of current) {
      const then = before.find((c) => c.namespace === now.namespace);
      if (then && then.url !== now.url) return null; // another cache repository: trees not comparable here
      const diff = await diffTrees(remotes.repoDirOf(now.url), (then?.tree ?? null) as TreeId | null, now.tree as TreeId);
      for (const change of diff) changes.push({ ...change, path: namespacedPath(now.namespace, change.path) });
    }
    for (const then of before) {
      if (current.some((c) => c.namespace === then.namespace)) continue;
      const diff = await diffTrees(remotes.repoDirOf(then.url), then.tree as TreeId, EMPTY_TREE);
      for (const change of diff) changes.push({ ...change, path: namespacedPath(then.namespace, change.path) });
    }
  } catch {
    return null;
  }
  return changes;
}

export interface CloneRequest {
  remotes: RemoteCache | undefined;
  clones: readonly ChainClone[];
  layerfilePath: string;
  instruction: CloneInstruction;
  rootfs: string;
  workdir: string;
}

/** Executes a CLONE into the machine's root (like COPY, sources relative to the remote's root). */
export async function cloneIntoMachine(request: CloneRequest): Promise<CopyRecord[]> {
  const { instruction } = request;
  const namespace = cloneNamespace(instruction.url, instruction.defaultBranch);
  const clone = request.clones.find((c) => c.namespace === namespace);
  if (!clone) throw new StrataError('STRATA_INTERNAL', `${request.layerfilePath}:${instruction.range.line}: CLONE ${instruction.url} was not fetched before it ran`);
  const remotes = request.remotes;
  if (!remotes) throw new StrataError('STRATA_INTERNAL', `${request.layerfilePath}:${instruction.range.line}: CLONE ran without a remote cache`);
  try {
    const records = await copyIntoMachine({
      repoDir: remotes.repoDirOf(clone.url),
      tree: clone.tree as TreeId,
      rootfs: request.rootfs,
      // Sources are relative to the cloned repository's root.
      layerfilePath: 'Layerfile',
      sources: instruction.sources,
      dest: instruction.dest,
      workdir: request.workdir,
    });
    return records.map((r) => ({ ...r, source: namespacedPath(namespace, r.source) }));
  } catch (error) {
    const reason = (error instanceof Error ? error.message : String(error)).replace(/^COPY /, '');
    throw new StrataError('STRATA_ENGINE', `${request.layerfilePath}:${instruction.range.line}: CLONE ${instruction.url} (branch ${clone.branch}, ${clone.commit.slice(0, 12)}): ${reason}`, {
      hint: 'CLONE sources are relative to the root of the cloned repository',
      cause: error,
    });
  }
}

/**
 * reapplyChanges for entries from the repository and from cloned ones: each entry's blob is read from
 * the repository its source path names. The order is reapplyChanges' (deletions deepest first, then
 * writes parents first) over all entries together.
 */
export async function reapplyWithClones(
  main: { repoDir: string; tree: TreeId },
  remotes: RemoteCache | undefined,
  clones: readonly ChainClone[],
  rootfs: string,
  entries: ReapplyEntry[],
): Promise<void> {
  if (!entries.some((e) => e.source.startsWith(CLONE_SOURCE_PREFIX))) {
    await reapplyChanges(main.repoDir, main.tree, rootfs, entries);
    return;
  }
  const deletions = entries.filter((e) => e.change.after === null).sort((a, b) => b.dest.length - a.dest.length);
  const writes = entries.filter((e) => e.change.after !== null).sort((a, b) => a.dest.length - b.dest.length);
  for (const entry of [...deletions, ...writes]) {
    if (!entry.source.startsWith(CLONE_SOURCE_PREFIX)) {
      await reapplyChanges(main.repoDir, main.tree, rootfs, [entry]);
      continue;
    }
    const clone = clones.find((c) => entry.source.startsWith(c.namespace + '/'));
    if (!clone || !remotes) throw new StrataError('STRATA_INTERNAL', `no cloned repository for ${entry.source}`);
    const source = entry.source.slice(clone.namespace.length + 1);
    await reapplyChanges(remotes.repoDirOf(clone.url), clone.tree as TreeId, rootfs, [{ ...entry, source }]);
  }
}
