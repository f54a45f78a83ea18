// COPY: sources from the commit's git tree into the machine, and the record of where each landed (the
// planner maps a changed repo path to machine paths through these records). Sources are relative to the
// Layerfile's directory, `/x` is from the repo root, `..` may climb but never out of the repo.
// Semantics follow Dockerfile COPY: a directory source copies its contents into dest; a file source
// lands at dest, or at dest/<name> when dest ends in `/`, is an existing directory, or there are
// several sources.
import { execFile } from 'node:child_process';
import { lstat, mkdir, readdir, rm, symlink, writeFile, chmod } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { StrataError } from '../errors.js';
import { exportTree, listTreeDirectory, pathState, type SourcePathState, type TreeId } from '../source/git.js';
import { ensureMachineDir, resolveInRoot } from './rootfs.js';
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
  await mkdir(dirname(host), { recursive: true });
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
      const shadowed = await shadowedPaths(repoDir, tree, source, host);
      await exportTree(repoDir, tree, source, host);
      records.push({ source, dest: dest.path, ...(shadowed.length > 0 ? { shadowed } : {}) });
      continue;
    }
    let target = dest.path;
    const intoDir = dest.isDir || request.sources.length > 1 || (await isMachineDir(rootfs, dest.path));
    if (intoDir) target = posix.join(dest.path, posix.basename(source));
    await ensureMachineDir(rootfs, posix.dirname(target));
    await writeEntry(repoDir, tree, source, state, await resolveInRoot(rootfs, target, { followLast: false }));
    records.push({ source, dest: target });
  }
  return records;
}

/**
 * The paths of directory `source` that the machine already has under `host` (its copy destination),
 * relative to it: what the copy is about to write over (see CopyRecord.shadowed). Only directories that
 * exist on both sides are listed, so a copy into a new or unrelated directory costs one readdir.
 */
async function shadowedPaths(repoDir: string, tree: TreeId, source: string, host: string): Promise<string[]> {
  const shadowed: string[] = [];
  const visit = async (relative: string): Promise<void> => {
    const present = await readdir(join(host, relative), { withFileTypes: true }).catch(() => []);
    if (present.length === 0) return;
    const inTree = await listTreeDirectory(repoDir, tree, posix.join(source || '.', relative));
    for (const entry of present) {
      const type = inTree.get(entry.name);
      if (type === undefined) continue;
      const path = relative === '' ? entry.name : `${relative}/${entry.name}`;
      shadowed.push(path);
      // Not through the machine's symlinks: the copy replaces a symlink, it does not write through it.
      if (type === 'dir' && entry.isDirectory()) await visit(path);
    }
  };
  await visit('');
  return shadowed;
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
