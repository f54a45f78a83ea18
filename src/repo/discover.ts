// Finding a repo's Layerfiles on disk: every regular file named exactly `Layerfile` (case-sensitive).
// The parser and the graph are pure; this is where their input is read.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { StrataError } from '../errors.js';

const LAYERFILE_NAME = 'Layerfile';
/** Directories never searched: git's own data and package trees (which may ship foreign Layerfiles). */
const SKIPPED_DIRS = new Set(['.git', 'node_modules']);

export interface LayerfileSource {
  /** Repo-relative posix path, e.g. `services/api/Layerfile`. */
  path: string;
  text: string;
}

/**
 * Repo-relative posix paths of every Layerfile under `repoDir`, sorted by code unit. Symlinks are not
 * followed (a symlinked directory could leave the repo or loop) and a symlink named Layerfile is not
 * one: the engine copies the repo as a tree, and a Layerfile should be a real file in it.
 */
export async function discoverLayerfiles(repoDir: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (relativeDir: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(join(repoDir, relativeDir), { withFileTypes: true });
    } catch (error) {
      // The repo root must be readable; a vanished or unreadable subdirectory is skipped, not fatal.
      if (relativeDir === '') {
        throw new StrataError('STRATA_USAGE', `cannot read directory ${repoDir}`, { cause: error });
      }
      return;
    }
    for (const entry of entries) {
      const relative = relativeDir === '' ? entry.name : `${relativeDir}/${entry.name}`;
      if (entry.isDirectory()) {
        if (!SKIPPED_DIRS.has(entry.name)) await walk(relative);
      } else if (entry.isFile() && entry.name === LAYERFILE_NAME) {
        found.push(relative);
      }
    }
  };
  await walk('');
  return found.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Discovers and reads every Layerfile under `repoDir` (UTF-8), in discovery order. */
export async function readLayerfiles(repoDir: string): Promise<LayerfileSource[]> {
  const paths = await discoverLayerfiles(repoDir);
  return Promise.all(
    paths.map(async (path) => ({ path, text: await readFile(join(repoDir, ...path.split('/')), 'utf8') })),
  );
}
