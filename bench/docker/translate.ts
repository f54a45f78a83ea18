// Layerfile -> Dockerfile, for the side-by-side benchmark against BuildKit (bench/buildkit.ts). Pure.
// Only the directives the benchmark scenarios use have a Docker equivalent here (FROM an image, COPY,
// RUN, ENV, WORKDIR); anything else throws rather than silently building something different.
//
// Semantics kept equal to strata's:
// - a Layerfile RUN runs with bash, so the Dockerfile sets `SHELL ["/bin/bash", "-c"]`;
// - strata's default WORKDIR is /root: the caller imports the base image with `--change 'WORKDIR
//   /root'` (image metadata, so BuildKit shows no extra step for it);
// - COPY sources are relative to the Layerfile's directory (`/x` from the repo root): the build context
//   is the repo root and the Layerfile must be there, where both readings agree.
import { parseLayerfile, type Instruction } from '../../src/layerfile/index.js';

export interface TranslateOptions {
  /** Strata image name -> Docker image reference, e.g. { 'vm/debian:12': 'strata-bench/debian:12' }. */
  images: Record<string, string>;
  /** Repo-relative path of the Layerfile, for error messages (default `Layerfile`). */
  file?: string;
}

/** The Dockerfile that builds what `layerfileText` builds. Throws on parse errors and untranslatable directives. */
export function layerfileToDockerfile(layerfileText: string, options: TranslateOptions): string {
  const file = options.file ?? 'Layerfile';
  if (file.includes('/')) throw new Error(`translate: only a Layerfile at the repo root can be translated, got ${file}`);
  const { layerfile, errors } = parseLayerfile(layerfileText, file);
  if (errors.length > 0) throw new Error(`translate: ${file} does not parse: ${errors.map((e) => e.message).join('; ')}`);
  return layerfile.instructions.map((instruction) => translateInstruction(instruction, options.images)).join('\n') + '\n';
}

function translateInstruction(instruction: Instruction, images: Record<string, string>): string {
  const where = `${instruction.range.file}:${instruction.range.line}`;
  switch (instruction.kind) {
    case 'from': {
      if (instruction.source.type !== 'image') throw new Error(`translate: ${where}: FROM another Layerfile has no Dockerfile equivalent here`);
      const image = images[instruction.source.name];
      if (image === undefined) throw new Error(`translate: ${where}: no Docker image given for ${instruction.source.name}`);
      return `FROM ${image}\nSHELL ["/bin/bash", "-c"]`;
    }
    case 'run':
      if (instruction.mode !== 'normal') throw new Error(`translate: ${where}: RUN ${instruction.mode.toUpperCase()} has no Dockerfile equivalent`);
      // A newline or a trailing backslash would change how Docker reads the line.
      if (/[\r\n]/.test(instruction.command) || instruction.command.endsWith('\\')) {
        throw new Error(`translate: ${where}: RUN command cannot be written on one Dockerfile line`);
      }
      return `RUN ${instruction.command}`;
    case 'copy': {
      const words = [...instruction.sources, instruction.dest];
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
