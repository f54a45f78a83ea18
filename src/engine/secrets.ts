// SECRET ENV: where secret values come from, which Layerfile lines need them, and masking them out of
// everything the engine reports. Values reach a machine only as environment of the processes it runs
// (never its files), enter definition keys only as sha256 (plan/definitionKey.ts), and are stored in
// the cache index only by name (a re-launched RUN BACKGROUND gets the current run's values).
import { readFile } from 'node:fs/promises';
import { StrataError } from '../errors.js';
import type { Instruction } from '../layerfile/types.js';
import type { Reporter } from './reporter.js';

/** The secrets a run may inject. */
export interface Secrets {
  readonly values: ReadonlyMap<string, string>;
  /** Where a secret of this name was looked for, for the "missing secret" error. */
  describeLookup(name: string): string;
}

export const noSecrets: Secrets = { values: new Map(), describeLookup: () => 'no secrets were given to this run' };

/** Process environment variables named `STRATA_SECRET_<NAME>` provide secret NAME. */
export const SECRET_ENV_PREFIX = 'STRATA_SECRET_';

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Parses a dotenv-style secrets file: `NAME=value` lines, optional `export `, `#` comment lines, values
 * optionally in "double" (with \n \" \\ escapes) or 'single' (literal) quotes; an unquoted value ends at
 * ` #`. Errors name the line but never echo it: it may hold a secret.
 */
export function parseSecretsFile(text: string, file: string): Map<string, string> {
  const values = new Map<string, string>();
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const fail = (why: string): never => {
      throw new StrataError('STRATA_USAGE', `${file}:${index + 1}: ${why}`, { hint: 'each line is NAME=value; # starts a comment line' });
    };
    const assignment = line.replace(/^export\s+/, '');
    const eq = assignment.indexOf('=');
    if (eq < 0) fail('expected NAME=value');
    const name = assignment.slice(0, eq).trim();
    if (!NAME.test(name)) fail('a secret name is letters, digits and _, not starting with a digit');
    const rest = assignment.slice(eq + 1).trim();
    let value: string;
    const quote = rest[0];
    if (quote === '"' || quote === "'") {
      const end = closingQuote(rest, quote);
      if (end < 0) fail(`unterminated ${quote} quote`);
      const trailing = rest.slice(end + 1).trim();
      if (trailing !== '' && !trailing.startsWith('#')) fail('unexpected text after the closing quote');
      const inner = rest.slice(1, end);
      value = quote === "'" ? inner : inner.replace(/\\([nrt"\\$])/g, (_m, c: string) => ({ n: '\n', r: '\r', t: '\t' })[c] ?? c);
    } else {
      value = rest.replace(/\s+#.*$/, '');
    }
    values.set(name, value);
  });
  return values;
}

function closingQuote(text: string, quote: string): number {
  for (let i = 1; i < text.length; i++) {
    if (quote === '"' && text[i] === '\\') i++;
    else if (text[i] === quote) return i;
  }
  return -1;
}

/**
 * The CLI's secrets: the `--secrets` file, then `STRATA_SECRET_<NAME>` variables of the environment for
 * names the file does not set (the file wins).
 */
export async function loadSecrets(options: { file?: string | undefined; env: NodeJS.ProcessEnv | Readonly<Record<string, string | undefined>> }): Promise<Secrets> {
  const values = new Map<string, string>();
  for (const [key, value] of Object.entries(options.env)) {
    if (key.startsWith(SECRET_ENV_PREFIX) && key.length > SECRET_ENV_PREFIX.length && value !== undefined) values.set(key.slice(SECRET_ENV_PREFIX.length), value);
  }
  const file = options.file;
  if (file !== undefined) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      throw new StrataError('STRATA_USAGE', `cannot read the secrets file ${file}`, { cause: error, hint: 'give --secrets a readable file of NAME=value lines' });
    }
    for (const [name, value] of parseSecretsFile(text, file)) values.set(name, value);
  }
  return {
    values,
    describeLookup: (name) => `${file !== undefined ? `the secrets file ${file} and ` : ''}the environment variable ${SECRET_ENV_PREFIX}${name}${file !== undefined ? '' : '; no --secrets file was given'}`,
  };
}

/** The SECRET ENV names of a Layerfile that have no value, with their lines. */
export function missingSecrets(path: string, instructions: readonly Instruction[], secrets: Secrets): Array<{ name: string; line: number; at: string }> {
  const missing: Array<{ name: string; line: number; at: string }> = [];
  for (const instruction of instructions) {
    if (instruction.kind !== 'secretEnv') continue;
    for (const name of instruction.names) {
      if (!secrets.values.has(name)) missing.push({ name, line: instruction.range.line, at: `${path}:${instruction.range.line}` });
    }
  }
  return missing;
}

/** Fails, before anything runs, when some SECRET ENV of these Layerfiles has no value. */
export function assertSecretsPresent(layerfiles: ReadonlyArray<{ path: string; instructions: readonly Instruction[] }>, secrets: Secrets): void {
  const missing = layerfiles.flatMap((l) => missingSecrets(l.path, l.instructions, secrets));
  if (missing.length === 0) return;
  const lines = missing.map((m) => `${m.at}: SECRET ENV ${m.name} has no value (looked in ${secrets.describeLookup(m.name)})`);
  throw new StrataError('STRATA_SECRET', missing.length === 1 ? (lines[0] as string) : `${missing.length} secrets have no value:\n${lines.join('\n')}`, {
    hint: `give each one in a --secrets file (NAME=value) or as ${SECRET_ENV_PREFIX}<NAME> in the environment`,
  });
}

/** The values of the named secrets, for a process's environment. Throws if one has no value. */
export function secretValuesFor(names: readonly string[], secrets: Secrets, context: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of names) {
    const value = secrets.values.get(name);
    if (value === undefined) {
      throw new StrataError('STRATA_SECRET', `${context}: secret ${name} has no value in this run (looked in ${secrets.describeLookup(name)})`, {
        hint: 'a restored RUN BACKGROUND process is started again with the current run\'s secrets: give the same secrets, or run with --no-cache',
      });
    }
    env[name] = value;
  }
  return env;
}

/** Values shorter than this are not masked: masking "1" or "on" would shred every log and hide nothing. */
export const MIN_MASKED_LENGTH = 3;
export const MASK = '***';

/**
 * Replaces secret values in text. Every character covered by an occurrence of any value is masked
 * (so overlapping or nested values are masked as a whole), and each covered run becomes one `***`.
 */
export class SecretMasker {
  private readonly secrets: string[];
  private readonly longest: number;

  constructor(values: Iterable<string>) {
    // Longest first; the coverage below does not depend on the order, but equal values collapse.
    this.secrets = [...new Set([...values].filter((v) => v.length >= MIN_MASKED_LENGTH))].sort((a, b) => b.length - a.length);
    this.longest = this.secrets[0]?.length ?? 0;
  }

  get active(): boolean {
    return this.secrets.length > 0;
  }

  mask(text: string): string {
    if (!this.active) return text;
    return render(text, this.cover(text, []));
  }

  /**
   * A masker for one output stream whose chunks may split a value: text that could be the start of a
   * value is held back until the next chunk shows whether it is one (or until `end`).
   */
  stream(): { write(chunk: string): string; end(): string } {
    let pending = '';
    let pendingCovered: boolean[] = [];
    // Whether the last character written was masked: a masked run split by the hold point stays one `***`.
    let endedMasked = false;
    const emit = (text: string, covered: boolean[]): string => {
      const out = render(text, covered, endedMasked);
      if (text.length > 0) endedMasked = covered[text.length - 1] ?? false;
      return out;
    };
    return {
      write: (chunk) => {
        if (!this.active) return chunk;
        const text = pending + chunk;
        const covered = this.cover(text, pendingCovered);
        const hold = this.holdFrom(text);
        pending = text.slice(hold);
        // Keep what is known to be covered: a value may end inside the held tail.
        pendingCovered = covered.slice(hold);
        return emit(text.slice(0, hold), covered.slice(0, hold));
      },
      end: () => {
        const out = emit(pending, this.cover(pending, pendingCovered));
        pending = '';
        pendingCovered = [];
        endedMasked = false;
        return out;
      },
    };
  }

  private cover(text: string, known: readonly boolean[]): boolean[] {
    const covered = Array.from({ length: text.length }, (_, i) => known[i] ?? false);
    for (const secret of this.secrets) {
      for (let at = text.indexOf(secret); at >= 0; at = text.indexOf(secret, at + 1)) covered.fill(true, at, at + secret.length);
    }
    return covered;
  }

  /** The first index of the tail that is a proper prefix of some value (text.length if none). */
  private holdFrom(text: string): number {
    for (let at = Math.max(0, text.length - this.longest + 1); at < text.length; at++) {
      const tail = text.slice(at);
      if (this.secrets.some((s) => s.length > tail.length && s.startsWith(tail))) return at;
    }
    return text.length;
  }
}

function render(text: string, covered: readonly boolean[], continuesMasked = false): string {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    if (!covered[i]) out += text[i];
    else if (i === 0 ? !continuesMasked : !covered[i - 1]) out += MASK;
  }
  return out;
}

/**
 * A reporter that masks secret values in every event before passing it on: step output (per runner,
 * step and stream, with the split-value tail flushed when the step ends, the runner ends or the run
 * ends), explanations, plans and failure messages.
 */
export function maskingReporter(reporter: Reporter, masker: SecretMasker, now: () => number): Reporter {
  if (!masker.active) return reporter;
  type Stream = ReturnType<SecretMasker['stream']>;
  const streams = new Map<string, { runner: string; step: number; stream: 'stdout' | 'stderr'; masker: Stream }>();
  const flush = (match: (s: { runner: string; step: number }) => boolean): void => {
    for (const [key, open] of streams) {
      if (!match(open)) continue;
      streams.delete(key);
      const data = open.masker.end();
      if (data) reporter.onStepOutput?.({ runner: open.runner, step: open.step, stream: open.stream, data, timeMs: now() });
    }
  };
  return {
    onRunStart: (e) => reporter.onRunStart?.(e),
    onRunnerStart: (e) => reporter.onRunnerStart?.({ ...e, plan: masker.mask(e.plan) }),
    onStepStatus: (e) => {
      if (e.status !== 'running') flush((s) => s.runner === e.runner && s.step === e.step);
      reporter.onStepStatus?.(e.explanation ? { ...e, explanation: { ...e.explanation, message: masker.mask(e.explanation.message) } } : e);
    },
    onStepOutput: (e) => {
      const key = JSON.stringify([e.runner, e.step, e.stream]);
      let open = streams.get(key);
      if (!open) streams.set(key, (open = { runner: e.runner, step: e.step, stream: e.stream, masker: masker.stream() }));
      const data = open.masker.write(e.data);
      if (data) reporter.onStepOutput?.({ ...e, data });
    },
    onRunnerEnd: (e) => {
      flush((s) => s.runner === e.runner);
      reporter.onRunnerEnd?.(e.message === undefined ? e : { ...e, message: masker.mask(e.message) });
    },
    onRunEnd: (e) => {
      flush(() => true);
      reporter.onRunEnd?.(e);
    },
  };
}
