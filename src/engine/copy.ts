// COPY: sources from the commit's git tree into the machine, and the record of where each landed (the
// planner maps a changed repo path to machine paths through these records). Sources are relative to the
// Layerfile's directory, `/x` is from the repo root, `..` may climb but never out of the repo.
// Semantics follow Dockerfile COPY: a directory source copies its contents into dest; a file source
// lands at dest, or at dest/<name> when dest ends in `/`, is an existing directory, or there are
// several sources.
import { execFile } from 'node:child_process';
import { lstat, readdir, rm, symlink, writeFile, chmod } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { StrataError } from '../errors.js';
import { exportTree, listTreeDirectory, pathState, type SourcePathState, type TreeId } from '../source/git.js';
import { ensureMachineDir, makeHostDirs, resolveInRoot } from './rootfs.js';
import type { CopyRecord, ReapplyEntry } from '../plan/types.js';

/** Repo-relative path of a COPY source written in the Layerfile at `layerfilePath`. */
export function resolveSourcePath(layerfilePath: string, source: string): string {
  const layerfileDir = posix.dirname(layerfilePath) === '.' ? '' : posix.dirname(layerfilePath);
  const joined = source.startsWith('/') ? posix.normalize(source) : posix.normalize('/' + posix.join(layerfileDir, source));
  // normalize('/..') is '/': detect climbing above the root before normalising it away.
  const climbing = source.startsWith('/') ? source : posix.join(layerfileDir || '.', source);
  if (posix.normalize(climbing).split('/')[0] === '..') {
    throw new StrataError('STRATA_ENGINE', `COPY source ${JSON.stringify(source)} is outside the repository`);
  }
  return joined.replace(/^\/+/, '').replace(/\/+$/, '');
}

/**
 * Checks every COPY source of a Layerfile against the tree before anything runs, so that a typo fails
 * at its line at once, not after the steps before it ran.
 */
export async function assertCopySources(repoDir: string, tree: TreeId, layerfilePath: string, copies: ReadonlyArray<{ sources: string[]; range: { line: number } }>): Promise<void> {
  for (const copy of copies) {
    for (const written of copy.sources) {
      let source: string;
      try {
        source = resolveSourcePath(layerfilePath, written);
      } catch (error) {
        if (error instanceof StrataError) throw new StrataError(error.code, `${layerfilePath}:${copy.range.line}: ${error.message}`, { hint: 'COPY sources must stay inside the repository' });
        throw error;
      }
      if (!(await pathState(repoDir, tree, source))) {
        throw new StrataError('STRATA_ENGINE', `${layerfilePath}:${copy.range.line}: COPY source ${JSON.stringify(written)} does not exist in the commit (looked for ${source || '.'})`, {
          hint: "paths are relative to the Layerfile's directory, /x from the repository root; files ignored by git are not copied",
        });
      }
    }
  }
}

/** Absolute machine path of a destination relative to `workdir`; keeps whether it ended in '/'. */
export function resolveDestPath(workdir: string, dest: string): { path: string; isDir: boolean } {
  const isDir = dest.endsWith('/') || dest === '.' || dest === './' || dest.endsWith('/.');
  const path = posix.resolve(workdir, dest);
  return { path, isDir };
}

function gitBlob(repoDir: string, tree: TreeId, path: string): Promise<Buffer> {
  // git's paths are decoded as UTF-8; a name that is not valid UTF-8 cannot be asked for by name.
  // (Traces and changes decode it the same lossy way, so it still invalidates: a rerun, never a wrong hit.)
  if (path.includes('\uFFFD')) {
    return Promise.reject(
      new StrataError('STRATA_ENGINE', `the file name ${JSON.stringify(path)} is not valid UTF-8, which strata cannot update in a restored machine yet`, {
        hint: 'rename the file, or run with --no-cache (a full copy handles any name)',
      }),
    );
  }
  return new Promise((resolve, reject) => {
    execFile('git', ['cat-file', 'blob', `${tree}:${path}`], { cwd: repoDir, encoding: 'buffer', maxBuffer: 4 * 1024 * 1024 * 1024 }, (error, stdout) => {
      if (error) reject(new StrataError('STRATA_ENGINE', `cannot read ${path} from the source tree`, { cause: error }));
      else resolve(stdout);
    });
  });
}

/** Writes one non-directory source path (file or symlink) at host path `host`, replacing what is there. */
async function writeEntry(repoDir: string, tree: TreeId, path: string, state: SourcePathState, host: string): Promise<void> {
  await makeHostDirs(dirname(host));
  await rm(host, { recursive: true, force: true });
  const content = await gitBlob(repoDir, tree, path);
  if (state.type === 'symlink') {
    await symlink(content.toString('utf8'), host);
  } else {
    await writeFile(host, content, { mode: state.mode });
    await chmod(host, state.mode);
  }
}

export interface CopyRequest {
  repoDir: string;
  tree: TreeId;
  /** The machine's root directory on the host (the machine must be frozen or stopped meanwhile). */
  rootfs: string;
  layerfilePath: string;
  sources: string[];
  dest: string;
  workdir: string;
}

/** Executes a COPY into the machine's root and returns where each source landed. */
export async function copyIntoMachine(request: CopyRequest): Promise<CopyRecord[]> {
  const { repoDir, tree, rootfs } = request;
  const dest = resolveDestPath(request.workdir, request.dest);
  const records: CopyRecord[] = [];
  for (const written of request.sources) {
    const source = resolveSourcePath(request.layerfilePath, written);
    const state = await pathState(repoDir, tree, source);
    if (!state) {
      throw new StrataError('STRATA_ENGINE', `COPY source ${JSON.stringify(written)} does not exist in the commit (looked for ${source || '.'})`, {
        hint: 'paths are relative to the Layerfile\'s directory; files ignored by git are not copied',
      });
    }
    if (state.type === 'dir') {
      const host = await ensureMachineDir(rootfs, dest.path);
      const before = await machineBeforeCopy(repoDir, tree, source, host);
      await exportTree(repoDir, tree, source, host);
      records.push(landedAt({ source, dest: machinePathOf(rootfs, host), ...before }, dest.path));
      continue;
    }
    let target = dest.path;
    const intoDir = dest.isDir || request.sources.length > 1 || (await isMachineDir(rootfs, dest.path));
    if (intoDir) target = posix.join(dest.path, posix.basename(source));
    await ensureMachineDir(rootfs, posix.dirname(target));
    const host = await resolveInRoot(rootfs, target, { followLast: false });
    await writeEntry(repoDir, tree, source, state, host);
    records.push(landedAt({ source, dest: machinePathOf(rootfs, host) }, target));
  }
  return records;
}

/**
 * The record of a copy that landed at `record.dest` (symlinks of the machine resolved) when the
 * Layerfile asked for `requested`. The record names where the files ARE: a step may retarget the
 * symlink later, and a restore must update the files the copy wrote, not write where the link points
 * then (nor may a second copy through a link to the same directory look like another directory).
 */
function landedAt(record: CopyRecord, requested: string): CopyRecord {
  return record.dest === requested ? record : { ...record, requestedDest: requested };
}

/** The machine path of host path `host` inside the machine rooted at `rootfs`. */
function machinePathOf(rootfs: string, host: string): string {
  const relative = posix.relative(posix.resolve(rootfs), posix.resolve(host));
  if (relative.startsWith('..')) throw new StrataError('STRATA_INTERNAL', `${host} is outside the machine root ${rootfs}`);
  return '/' + relative;
}

/**
 * What the machine holds under `host` (a directory copy's destination) before the copy, relative to it
 * (see CopyRecord): `shadowed`, the paths the copy is about to write over, and `preexisting`, the
 * machine's entries the copied tree does not have there (a later commit may add them, and a restore
 * then writes over them). Only directories on both sides are descended into, so a copy into a new or
 * unrelated directory costs one readdir, and a big unrelated tree (node_modules) is one entry.
 */
async function machineBeforeCopy(repoDir: string, tree: TreeId, source: string, host: string): Promise<Pick<CopyRecord, 'shadowed' | 'preexisting'>> {
  const shadowed: string[] = [];
  const preexisting: string[] = [];
  const visit = async (relative: string): Promise<void> => {
    const present = await readdir(join(host, relative), { withFileTypes: true }).catch(() => []);
    if (present.length === 0) return;
    const inTree = await listTreeDirectory(repoDir, tree, posix.join(source || '.', relative));
    for (const entry of present) {
      const path = relative === '' ? entry.name : `${relative}/${entry.name}`;
      const type = inTree.get(entry.name);
      if (type === undefined) {
        preexisting.push(path);
        continue;
      }
      shadowed.push(path);
      // Not through the machine's symlinks: the copy replaces a symlink, it does not write through it.
      if (type === 'dir' && entry.isDirectory()) await visit(path);
    }
  };
  await visit('');
  return { ...(shadowed.length > 0 ? { shadowed } : {}), ...(preexisting.length > 0 ? { preexisting: preexisting.sort() } : {}) };
}

async function isMachineDir(rootfs: string, machinePath: string): Promise<boolean> {
  try {
    return (await lstat(await resolveInRoot(rootfs, machinePath))).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Brings restored copies up to date with the new commit: writes changed files, creates new
 * directories, deletes removed paths. Entries are applied parents first, deletions deepest first.
 */
export async function reapplyChanges(repoDir: string, tree: TreeId, rootfs: string, entries: ReapplyEntry[]): Promise<void> {
  const deletions = entries.filter((e) => e.change.after === null).sort((a, b) => b.dest.length - a.dest.length);
  const writes = entries.filter((e) => e.change.after !== null).sort((a, b) => a.dest.length - b.dest.length);
  for (const entry of deletions) {
    await rm(await resolveInRoot(rootfs, entry.dest, { followLast: false }), { recursive: true, force: true });
  }
  for (const entry of writes) {
    const after = entry.change.after as SourcePathState;
    if (after.type === 'dir') {
      const host = await resolveInRoot(rootfs, entry.dest, { followLast: false });
      try {
        if (!(await lstat(host)).isDirectory()) await rm(host, { force: true });
      } catch {
        // absent: created below
      }
      await ensureMachineDir(rootfs, entry.dest);
    } else {
      await ensureMachineDir(rootfs, posix.dirname(entry.dest));
      await writeEntry(repoDir, tree, entry.source, after, await resolveInRoot(rootfs, entry.dest, { followLast: false }));
    }
  }
}
