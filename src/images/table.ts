// The image table: base image names (`FROM vm/debian:12`) mapped to build recipes, in a JSON file
// (config/images.json by default; STRATA_IMAGE_TABLE or an option overrides it). A recipe's hash names
// the built image, so editing a recipe builds a new image instead of reusing a stale one.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { StrataError } from '../errors.js';

const packageName = z.string().regex(/^[a-z0-9][a-z0-9+.-]*$/, 'a Debian package name');

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
  })
  .strict();

export type ImageRecipe = z.infer<typeof mmdebstrapRecipeSchema>;

const tableSchema = z.record(z.string().regex(/^vm\/[a-z0-9._-]+:[A-Za-z0-9._-]+$/, 'an image name like vm/debian:12'), mmdebstrapRecipeSchema);

export interface ImageTable {
  path: string;
  images: Map<string, ImageRecipe>;
}

/** Bump when the way a recipe becomes an image changes (hooks, extraction): every image rebuilds. */
export const imageBuilderVersion = 2;

export const bundledImageTablePath = fileURLToPath(new URL('../../config/images.json', import.meta.url));

/** The table path: explicit option, else $STRATA_IMAGE_TABLE, else the bundled config/images.json. */
export function imageTablePath(explicit?: string): string {
  return explicit ?? process.env.STRATA_IMAGE_TABLE ?? bundledImageTablePath;
}

export async function loadImageTable(path: string): Promise<ImageTable> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    throw new StrataError('STRATA_IMAGE', `cannot read the image table ${path}: ${(error as Error).message}`, {
      cause: error,
      hint: 'set STRATA_IMAGE_TABLE to a JSON file mapping image names to recipes (see config/images.json)',
    });
  }
  const parsed = tableSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(top)'}: ${issue.message}`);
    throw new StrataError('STRATA_IMAGE', `invalid image table ${path}: ${problems.join('; ')}`);
  }
  return { path, images: new Map(Object.entries(parsed.data)) };
}

export function findRecipe(table: ImageTable, imageName: string): ImageRecipe {
  const recipe = table.images.get(imageName);
  if (recipe) return recipe;
  const known = [...table.images.keys()].sort();
  throw new StrataError(
    'STRATA_IMAGE',
    `unknown base image "${imageName}"; known images: ${known.join(', ') || '(none)'} (image table ${table.path})`,
    { hint: 'add a recipe for it to the image table, or point STRATA_IMAGE_TABLE at another table' },
  );
}

/** Hex sha256 of the recipe (keys sorted) and the builder version. */
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
    .update(JSON.stringify({ builder: imageBuilderVersion, recipe: sorted(recipe) }))
    .digest('hex');
}
