// The repository's sources as git trees. Every source state strata caches against is a git tree id:
// a commit's tree, or — for a dirty working tree — a tree written from a temporary index (content
// hashes, never size+mtime; ARCHITECTURE decision 5). Changes between two source states come from
// `git diff-tree`, which is O(changed paths) and also reports directories that appear or disappear.
import { spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StrataError } from '../errors.js';
import { execOrThrow } from '../util/exec.js';
import type { PathState, PathType, SourceChange } from '../plan/types.js';

export type TreeId = string & { readonly __brand: 'TreeId' };

/** The state of one path in a source tree (the planner's PathState), and a change between two trees. */
export type SourcePathState = PathState;
export type SourcePathChange = SourceChange;

export interface CommitInfo {
  commit: string;
  tree: TreeId;
  branch: string;
  title: string;
  tag: string;
}

async function git(repoDir: string, args: string[], env?: NodeJS.ProcessEnv): Promise<string> {
  const result = await execOrThrow('git', args, {
    cwd: repoDir,
    env: env ? { ...process.env, ...env } : process.env,
    maxBufferBytes: 512 * 1024 * 1024,
    errorCode: 'STRATA_ENGINE',
  });
  return result.stdout;
}

/** True when `dir` is inside a git work tree. */
export async function isGitRepo(dir: string): Promise<boolean> {
  try {
    return (await git(dir, ['rev-parse', '--is-inside-work-tree'])).trim() === 'true';
  } catch {
    return false;
  }
}

export async function repoRoot(dir: string): Promise<string> {
  return (await git(dir, ['rev-parse', '--show-toplevel'])).trim();
}

/** The commit `rev` resolves to, with the metadata steps see as GIT_* variables. */
export async function commitInfo(repoDir: string, rev = 'HEAD'): Promise<CommitInfo> {
  const commit = (await git(repoDir, ['rev-parse', '--verify', `${rev}^{commit}`])).trim();
  const tree = (await git(repoDir, ['rev-parse', `${commit}^{tree}`])).trim() as TreeId;
  const title = (await git(repoDir, ['log', '-1', '--format=%s', commit])).trim();
  const tag = (await git(repoDir, ['describe', '--always', '--tags', commit])).trim();
  let branch = '';
  try {
    branch = (await git(repoDir, ['symbolic-ref', '--short', '-q', 'HEAD'])).trim();
  } catch {
    branch = ''; // detached HEAD
  }
  return { commit, tree, branch, title, tag };
}

/**
 * A tree id for the working tree as it is now: tracked and untracked files, minus ignored ones.
 * Uses a copy of the real index so unchanged files are not re-hashed, and never touches the real one.
 */
export async function workingTreeId(repoDir: string): Promise<TreeId> {
  const root = await repoRoot(repoDir);
  const gitDir = (await git(root, ['rev-parse', '--absolute-git-dir'])).trim();
  const scratch = await mkdtemp(join(tmpdir(), 'strata-index-'));
  const index = join(scratch, 'index');
  try {
    // git trusts an entry's stat data (size, mtime in seconds) unless the file changed in the same
    // second as the index was written ("racily clean"), which it tells by the index file's own mtime.
    // A copy made now would make a same-size edit from that second look clean: the copy gets the
    // original's mtime, rounded down and read before copying (so only ever more entries count as
    // racy, never fewer).
    let original: { atime: Date; mtimeMs: number } | null = null;
    try {
      original = await stat(join(gitDir, 'index'));
      await copyFile(join(gitDir, 'index'), index);
    } catch {
      original = null; // no index yet (fresh repo): git builds one from scratch
    }
    if (original) await utimes(index, original.atime, Math.floor(original.mtimeMs / 1000));
    const env = { GIT_INDEX_FILE: index };
    await git(root, ['add', '-A', '--', '.'], env);
    return (await git(root, ['write-tree'], env)).trim() as TreeId;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

function stateOf(gitMode: string, blobSize: number | undefined): SourcePathState | null {
  switch (gitMode) {
    case '000000':
      return null;
    case '040000':
      return { type: 'dir', mode: 0o755, size: 0, contentId: '' };
    case '120000':
      return { type: 'symlink', mode: 0o777, size: blobSize ?? 0, contentId: '' };
    case '100755':
      return { type: 'file', mode: 0o755, size: blobSize ?? 0, contentId: '' };
    case '160000': // submodule: seen as an (empty) directory; its contents are not copied
      return { type: 'dir', mode: 0o755, size: 0, contentId: '' };
    default:
      return { type: 'file', mode: 0o644, size: blobSize ?? 0, contentId: '' };
  }
}

const NULL_OID = /^0+$/;

/** Sizes of blobs, by id, in one `git cat-file --batch-check` round trip. */
async function blobSizes(repoDir: string, ids: string[]): Promise<Map<string, number>> {
  const sizes = new Map<string, number>();
  const unique = [...new Set(ids)];
  if (unique.length === 0) return sizes;
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn('git', ['cat-file', '--batch-check=%(objectname) %(objectsize)'], { cwd: repoDir });
    let buffer = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (buffer += chunk));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(buffer) : reject(new StrataError('STRATA_ENGINE', `git cat-file exited ${code}`))));
    child.stdin.end(unique.join('\n') + '\n');
  });
  for (const line of out.split('\n')) {
    const [id, size] = line.split(' ');
    if (id && size && /^\d+$/.test(size)) sizes.set(id, Number(size));
  }
  return sizes;
}

/**
 * Every path that differs between two trees, directories included (an added directory is listed along
 * with the files in it). `from` null means "everything in `to` is new".
 */
export async function diffTrees(repoDir: string, from: TreeId | null, to: TreeId): Promise<SourcePathChange[]> {
  if (from === to) return [];
  const args = from === null ? ['ls-tree', '-r', '-t', '-z', '--full-tree', to] : ['diff-tree', '-r', '-t', '-z', '--raw', '--no-renames', from, to];
  const out = await git(repoDir, args);
  const raw: Array<{ path: string; oldMode: string; newMode: string; oldId: string; newId: string }> = [];
  if (from === null) {
    // "<mode> <type> <id>\t<path>\0"
    for (const entry of out.split('\0')) {
      if (!entry) continue;
      const tab = entry.indexOf('\t');
      const [mode, , id] = entry.slice(0, tab).split(' ');
      raw.push({ path: entry.slice(tab + 1), oldMode: '000000', newMode: mode ?? '', oldId: '', newId: id ?? '' });
    }
  } else {
    // ":<old mode> <new mode> <old id> <new id> <status>\0<path>\0"
    const parts = out.split('\0');
    for (let i = 0; i + 1 < parts.length; i += 2) {
      const header = parts[i] ?? '';
      const path = parts[i + 1] ?? '';
      if (!header.startsWith(':')) continue;
      const [oldMode, newMode, oldId, newId] = header.slice(1).split(' ');
      raw.push({ path, oldMode: oldMode ?? '', newMode: newMode ?? '', oldId: oldId ?? '', newId: newId ?? '' });
    }
  }
  const blobIds = raw.flatMap((r) => [r.oldId, r.newId]).filter((id) => id && !NULL_OID.test(id));
  const sizes = await blobSizes(repoDir, blobIds);
  const changes: SourcePathChange[] = [];
  for (const r of raw) {
    const before = stateOf(r.oldMode, sizes.get(r.oldId));
    const after = stateOf(r.newMode, sizes.get(r.newId));
    if (before && before.type !== 'dir') before.contentId = r.oldId;
    if (after && after.type !== 'dir') after.contentId = r.newId;
    // A directory whose contents changed is not itself a change: its own entries are listed.
    if (before?.type === 'dir' && after?.type === 'dir') continue;
    changes.push({ path: r.path, before, after });
  }
  changes.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return changes;
}

/** The state of one path in a tree, or null when absent. */
export async function pathState(repoDir: string, tree: TreeId, path: string): Promise<SourcePathState | null> {
  if (path === '' || path === '.') return { type: 'dir', mode: 0o755, size: 0, contentId: '' };
  // Literal: a name like `:x` or `*.txt` is a file name here, not a pathspec.
  const out = await git(repoDir, ['--literal-pathspecs', 'ls-tree', '-z', '--long', '--full-tree', tree, '--', path]);
  const entry = out.split('\0').find((e) => e.endsWith(`\t${path}`));
  if (!entry) return null;
  const [mode, , id, size] = entry.slice(0, entry.indexOf('\t')).trim().split(/\s+/);
  const state = stateOf(mode ?? '', size && /^\d+$/.test(size) ? Number(size) : 0);
  if (state && state.type !== 'dir') state.contentId = id ?? '';
  return state;
}

/** The entries directly inside directory `dir` of `tree` ('' = its root): name -> type. Empty when absent. */
export async function listTreeDirectory(repoDir: string, tree: TreeId, dir: string): Promise<Map<string, PathType>> {
  const treeish = dir === '' || dir === '.' ? tree : `${tree}:${dir}`;
  const out = await git(repoDir, ['ls-tree', '-z', treeish]).catch(() => '');
  const entries = new Map<string, PathType>();
  for (const entry of out.split('\0')) {
    const tab = entry.indexOf('\t');
    if (tab < 0) continue;
    const state = stateOf(entry.slice(0, entry.indexOf(' ')), 0);
    if (state) entries.set(entry.slice(tab + 1), state.type);
  }
  return entries;
}

/**
 * Writes the contents of `tree` (or of its subdirectory/file `path`) into `destDir` as a tar stream
 * through `git archive`, preserving executable bits and symlinks. Every file holds exactly its blob:
 * no .gitattributes conversion or export-ignore (see rawAttributesGitDir).
 */
export async function exportTree(repoDir: string, tree: TreeId, path: string, destDir: string): Promise<void> {
  const treeish = path === '' || path === '.' ? tree : `${tree}:${path}`;
  const objects = (await git(repoDir, ['rev-parse', '--path-format=absolute', '--git-path', 'objects'])).trim();
  const rawGitDir = await rawAttributesGitDir();
  try {
    await archiveInto(rawGitDir.env(objects), treeish, destDir);
  } finally {
    await rawGitDir.remove();
  }
}

/**
 * Attributes that would make an exported file differ from its blob: eol/text conversion, ident,
 * filters (e.g. LFS smudge), encodings, export-ignore/export-subst. All unset, for every path.
 */
const RAW_ATTRIBUTES = '* -text -eol -crlf -ident -filter -working-tree-encoding -export-ignore -export-subst\n';

/**
 * `git archive` applies the tree's .gitattributes (and core.autocrlf), but the planner compares blob
 * ids and a restore re-applies raw blobs (`git cat-file blob`): a converted or omitted file would make
 * a fresh copy differ from an incremental one, and an edit to .gitattributes alone would change the
 * copied files without any change the planner sees. So the archive runs in a throwaway git dir that
 * borrows the repository's objects (GIT_ALTERNATE_OBJECT_DIRECTORIES) and whose info/attributes, which
 * takes precedence over every .gitattributes, unsets them all: the copy holds exactly the blobs.
 */
async function rawAttributesGitDir(): Promise<{ env: (objects: string) => NodeJS.ProcessEnv; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'strata-raw-gitdir-'));
  await Promise.all([mkdir(join(dir, 'objects')), mkdir(join(dir, 'refs')), mkdir(join(dir, 'info'))]);
  await writeFile(join(dir, 'HEAD'), 'ref: refs/heads/main\n');
  await writeFile(join(dir, 'info', 'attributes'), RAW_ATTRIBUTES);
  return {
    env: (objects) => ({ ...process.env, GIT_DIR: dir, GIT_ALTERNATE_OBJECT_DIRECTORIES: objects, GIT_ATTR_NOSYSTEM: '1' }),
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}

function archiveInto(env: NodeJS.ProcessEnv, treeish: string, destDir: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const archive = spawn('git', ['-c', 'tar.umask=0022', '-c', 'core.autocrlf=false', 'archive', '--format=tar', treeish], { cwd: env.GIT_DIR, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const untar = spawn('tar', ['-x', '--no-same-owner', '-C', destDir], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    archive.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    untar.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    archive.stdout.pipe(untar.stdin);
    let pending = 2;
    let failed = false;
    const done = (code: number | null, what: string) => {
      if (code !== 0 && !failed) {
        failed = true;
        reject(new StrataError('STRATA_ENGINE', `${what} of ${treeish} into ${destDir} failed: ${stderr.trim()}`));
      }
      if (--pending === 0 && !failed) resolve();
    };
    archive.on('close', (code) => done(code, 'git archive'));
    untar.on('close', (code) => done(code, 'tar'));
  });
}

/**
 * Every file named exactly `Layerfile` in the tree (not under node_modules), with its text. Reading
 * from the tree rather than the disk keeps the Layerfiles and the sources of one run consistent.
 */
export async function readLayerfilesFromTree(repoDir: string, tree: TreeId): Promise<Array<{ path: string; text: string }>> {
  const out = await git(repoDir, ['ls-tree', '-r', '-z', '--full-tree', tree]);
  const found: Array<{ path: string; id: string }> = [];
  for (const entry of out.split('\0')) {
    if (!entry) continue;
    const tab = entry.indexOf('\t');
    const path = entry.slice(tab + 1);
    const [mode, type, id] = entry.slice(0, tab).split(' ');
    if (type !== 'blob' || mode === '120000' || !id) continue;
    if (path !== 'Layerfile' && !path.endsWith('/Layerfile')) continue;
    if (path.split('/').includes('node_modules')) continue;
    found.push({ path, id });
  }
  found.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return Promise.all(found.map(async ({ path, id }) => ({ path, text: await git(repoDir, ['cat-file', 'blob', id]) })));
}
