// Layerfile -> Dockerfile, for the side-by-side benchmark against BuildKit (bench/buildkit.ts). Pure.
// Only the directives the benchmark scenarios use have a Docker equivalent here (FROM an image, COPY,
// RUN, ENV, WORKDIR); anything else throws rather than silently building something different.
//
// Semantics kept equal to strata's:
// - a Layerfile RUN runs with bash, so the Dockerfile sets `SHELL ["/bin/bash", "-c"]`;
// - strata's default WORKDIR is /root: the caller imports the base image with `--change 'WORKDIR
//   /root'` (image metadata, so BuildKit shows no extra step for it);
// - COPY sources are relative to the Layerfile's directory (`/x` from the repo root); the build context
//   is always the repo root, so a Layerfile in a subdirectory gets its sources rewritten to repo-root
//   paths (`COPY . .` in services/api/Layerfile becomes `COPY services/api .`);
// - `FROM ../base` (inheriting another Layerfile's final machine) becomes `FROM <tag>` of the image the
//   caller built from that Layerfile's own translation (TranslateOptions.layerfileImages).
import { posix } from 'node:path';
import { resolveLayerfilePath } from '../../src/layerfile/graph.js';
import { parseLayerfile, type Instruction } from '../../src/layerfile/index.js';

export interface TranslateOptions {
  /** Strata image name -> Docker image reference, e.g. { 'vm/debian:12': 'strata-bench/debian:12' }. */
  images: Record<string, string>;
  /** Repo-relative path of the Layerfile (default `Layerfile`): COPY sources and FROM paths are relative to its directory. */
  file?: string;
  /** Repo-relative Layerfile path -> the Docker image built from it, for `FROM ../base`. */
  layerfileImages?: Record<string, string>;
}

/** The Dockerfile that builds what `layerfileText` builds. Throws on parse errors and untranslatable directives. */
export function layerfileToDockerfile(layerfileText: string, options: TranslateOptions): string {
  const file = options.file ?? 'Layerfile';
  const { layerfile, errors } = parseLayerfile(layerfileText, file);
  if (errors.length > 0) throw new Error(`translate: ${file} does not parse: ${errors.map((e) => e.message).join('; ')}`);
  return layerfile.instructions.map((instruction) => translateInstruction(instruction, file, options)).join('\n') + '\n';
}

/** A COPY source as a path in the build context (the repo root). */
function contextPath(file: string, source: string, where: string): string {
  const dir = posix.dirname(file);
  if (dir === '.' && !source.startsWith('/')) return source; // at the root both readings agree: keep it as written
  const joined = source.startsWith('/') ? posix.normalize(`.${source}`) : posix.join(dir, source);
  if (joined === '..' || joined.startsWith('../')) throw new Error(`translate: ${where}: COPY source ${source} is outside the repository`);
  return joined;
}

function translateInstruction(instruction: Instruction, file: string, options: TranslateOptions): string {
  const where = `${instruction.range.file}:${instruction.range.line}`;
  switch (instruction.kind) {
    case 'from': {
      if (instruction.source.type === 'image') {
        const image = options.images[instruction.source.name];
        if (image === undefined) throw new Error(`translate: ${where}: no Docker image given for ${instruction.source.name}`);
        return `FROM ${image}\nSHELL ["/bin/bash", "-c"]`;
      }
      const parent = resolveLayerfilePath(file, instruction.source.path);
      const image = parent.ok ? options.layerfileImages?.[parent.path] : undefined;
      if (image === undefined) throw new Error(`translate: ${where}: FROM another Layerfile needs the image built from it (layerfileImages), none given for ${instruction.source.path}`);
      // The parent's image carries its SHELL, ENV and WORKDIR, like the parent's final machine state.
      return `FROM ${image}`;
    }
    case 'run':
      if (instruction.mode !== 'normal') throw new Error(`translate: ${where}: RUN ${instruction.mode.toUpperCase()} has no Dockerfile equivalent`);
      // A newline or a trailing backslash would change how Docker reads the line.
      if (/[\r\n]/.test(instruction.command) || instruction.command.endsWith('\\')) {
        throw new Error(`translate: ${where}: RUN command cannot be written on one Dockerfile line`);
      }
      return `RUN ${instruction.command}`;
    case 'copy': {
      const words = [...instruction.sources.map((source) => contextPath(file, source, where)), instruction.dest];
      // The JSON form keeps names with spaces or quotes intact.
      return words.some((word) => /[\s"'\\]/.test(word)) ? `COPY ${JSON.stringify(words)}` : `COPY ${words.join(' ')}`;
    }
    case 'workdir':
      return `WORKDIR ${instruction.dir}`;
    case 'env':
      return `ENV ${instruction.vars.map((v) => `${v.name}=${dockerEnvValue(v.raw)}`).join(' ')}`;
    default:
      throw new Error(`translate: ${where}: ${instruction.canonical} has no Dockerfile translation in this benchmark`);
  }
}

/**
 * `raw` keeps the quotes as written: Docker, like strata, expands "$X" and keeps '$X' literal. Only the
 * legacy `ENV K hello world` form gives an unquoted value with spaces; Docker needs it double-quoted.
 */
function dockerEnvValue(raw: string): string {
  const quoted = /^(["']).*\1$/s.test(raw);
  return quoted || !/\s/.test(raw) ? raw : `"${raw.replace(/["\\]/g, '\\$&')}"`;
}
