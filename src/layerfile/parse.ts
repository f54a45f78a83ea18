// Phase 2 of parsing: syntax nodes -> typed instructions (types.ts), one small function per directive.
// Collects every error instead of stopping at the first; never throws for bad input.
import { canonicalEnvValue, displayEnvValue, ENV_NAME, parseEnvValue } from './env.js';
import { LayerfileError } from './errors.js';
import { editDistance, maxSuggestionDistance, closest } from './suggest.js';
import { errorAt, KEYWORDS, parseSyntax, type Keyword, type SyntaxNode } from './syntax.js';
import type { ExposeWebsiteTarget, Instruction, InstructionKind, InstructionOf, Layerfile, SkipCondition, SkipOperator } from './types.js';
import { quoteWord, splitWords, trailingCommentStart, unquote, type SplitOptions, type Word } from './words.js';

export interface ParseResult {
  layerfile: Layerfile;
  errors: LayerfileError[];
}

/** Upper bound for `SPLIT n`: each copy is a whole machine; larger numbers are almost surely typos. */
export const MAX_SPLIT = 1000;
/** Linux user names are at most 32 characters (useradd). */
const MAX_USER_NAME = 32;

/**
 * Parses a Layerfile. `file` is the repo-relative path used in error messages and source ranges.
 * Returns the instructions that parsed (even when there are errors) and every error, sorted by position.
 */
export function parseLayerfile(text: string, file: string): ParseResult {
  const tree = parseSyntax(text, file);
  const errors = [...tree.errors];
  const instructions: Instruction[] = [];
  let fromSeen = false;

  tree.nodes.forEach((node, index) => {
    if (node.broken) return;
    const directive = new Directive(node, tree.lines, errors);
    if (!node.known) {
      reportUnknownDirective(directive);
      return;
    }
    const keyword = node.keyword as Keyword;
    if (keyword === 'FROM') {
      if (fromSeen) {
        directive.failAtKeyword('FROM may appear only once', { hint: 'a Layerfile has exactly one base; use WAIT to order Layerfiles' });
        return;
      }
      fromSeen = true;
    } else if (index === 0) {
      directive.failAtKeyword('a Layerfile must start with FROM', {
        hint: 'put e.g. "FROM vm/debian:12" on the first line (comments and blank lines may come before it)',
      });
    }
    // MEMORY may stand anywhere and more than once (layerfile-reference/memory.md: it reserves memory
    // from that line on); the engine raises the machine's limit there.
    const instruction = DIRECTIVES[keyword](directive);
    if (instruction === undefined) return;
    instructions.push(instruction);
  });

  if (tree.nodes.length === 0) {
    errors.push(
      new LayerfileError({
        file,
        line: 1,
        column: 1,
        sourceLine: tree.lines[0] ?? '',
        message: 'the Layerfile is empty: it needs a FROM line',
        hint: 'e.g. "FROM vm/debian:12"',
      }),
    );
  }
  errors.sort((a, b) => a.line - b.line || a.column - b.column);
  return { layerfile: { path: file, instructions }, errors };
}

type Fields<K extends InstructionKind> = Omit<InstructionOf<K>, 'kind' | 'range' | 'canonical'>;
type Extra = { hint?: string | undefined; suggestion?: string | undefined };

/**
 * Directives whose arguments are free text, where a `#` is kept: RUN's command line reaches the shell
 * (which has its own comments), and a BUTTON message is shown as written (`BUTTON deploy #2?`).
 */
const FREE_TEXT: ReadonlySet<string> = new Set<Keyword>(['RUN', 'RUN BACKGROUND', 'RUN REPEATABLE', 'BUTTON']);

/** One node being parsed: access to its arguments and error reporting pointed into its source. */
class Directive {
  /** The arguments without a trailing comment (`COPY . . # everything`), except in free-text directives. */
  readonly args: string;

  constructor(
    readonly node: SyntaxNode,
    private readonly lines: readonly string[],
    private readonly errors: LayerfileError[],
  ) {
    const options = node.keyword === 'ENV' ? { backslashEscapes: true } : {};
    this.args = FREE_TEXT.has(node.keyword) ? node.args : node.args.slice(0, trailingCommentStart(node.args, options)).replace(/[ \t]+$/, '');
  }

  /** Reports an error at an offset in the arguments; returns undefined so parsers can `return d.fail(...)`. */
  fail(argsOffset: number, length: number, message: string, extra: Extra = {}): undefined {
    this.errors.push(errorAt(this.lines, this.node, this.node.argsOffset + argsOffset, length, message, extra));
    return undefined;
  }

  failAtWord(word: Word, message: string, extra: Extra = {}): undefined {
    return this.fail(word.offset, word.raw.length, message, extra);
  }

  failAtKeyword(message: string, extra: Extra = {}, length = this.keywordLength()): undefined {
    this.errors.push(errorAt(this.lines, this.node, 0, length, message, extra));
    return undefined;
  }

  /** An argument is missing: point just past the keyword. */
  missing(message: string, extra: Extra = {}): undefined {
    this.errors.push(errorAt(this.lines, this.node, this.keywordLength(), 1, message, extra));
    return undefined;
  }

  keywordLength(): number {
    return this.node.text.slice(0, this.node.argsOffset).replace(/[ \t]+$/, '').length;
  }

  words(options: SplitOptions = {}): Word[] | undefined {
    const split = splitWords(this.args, options);
    if (!split.ok) return this.fail(split.offset, 1, split.message, { hint: 'close the quote on the same line' });
    return split.words;
  }

  /** Words, checking their number; the message says what was expected. */
  wordsBetween(min: number, max: number, expected: string): Word[] | undefined {
    const words = this.words();
    if (words === undefined) return undefined;
    if (words.length < min) return this.missing(`${this.node.keyword} needs ${expected}`);
    const extra = words[max];
    if (extra !== undefined) {
      return this.fail(extra.offset, this.args.length - extra.offset, `${this.node.keyword} takes ${expected}`);
    }
    for (const word of words) {
      if (word.value === '') return this.failAtWord(word, 'empty argument');
    }
    return words;
  }

  make<K extends InstructionKind>(kind: K, canonicalArgs: string, fields: Fields<K>): InstructionOf<K> {
    const canonical = canonicalArgs === '' ? this.node.keyword : `${this.node.keyword} ${canonicalArgs}`;
    return { kind, range: this.node.range, canonical, ...fields } as unknown as InstructionOf<K>;
  }
}

const DIRECTIVES: Record<Keyword, (d: Directive) => Instruction | undefined> = {
  FROM: parseFrom,
  RUN: (d) => parseRun(d, 'normal'),
  'RUN BACKGROUND': (d) => parseRun(d, 'background'),
  'RUN REPEATABLE': (d) => parseRun(d, 'repeatable'),
  COPY: parseCopy,
  CLONE: parseClone,
  WORKDIR: parseWorkdir,
  ENV: parseEnv,
  'BUILD ENV': (d) => parseEnvNames(d, 'buildEnv'),
  'SECRET ENV': (d) => parseEnvNames(d, 'secretEnv'),
  CACHE: parseCache,
  CHECKPOINT: parseCheckpoint,
  SPLIT: parseSplit,
  BUTTON: parseButton,
  WAIT: parseWait,
  'SKIP REMAINING IF': parseSkipRemainingIf,
  'EXPOSE WEBSITE': parseExposeWebsite,
  'EXPOSE TCP': parseExposeTcp,
  MEMORY: parseMemory,
  USER: parseUser,
  'SETUP FILE': parseSetupFile,
  LABEL: parseLabel,
};

const quoted = (words: Word[]): string => words.map((w) => quoteWord(w.value)).join(' ');

// FROM vm/NAME:TAG or webapp.io/NAME[:TAG] (a base image, kept as written; src/images/ maps names to
// images) or a path to another Layerfile. A vm/ tag is required so a base never drifts silently; the
// vendor's webapp.io/ images were published with and without one (`webapp.io/react`, `webapp.io/node:16`).
// `name:tag` without `vm/` is old LayerCI / Docker habit, reported with the modern spelling rather
// than read as a path (write `./name:tag` for a directory with a colon). Inheriting from another
// repository (`github/owner/repo/path/Layerfile@sha`, an old hosted-product form) is refused.
const NAME_PART = '[a-z0-9][a-z0-9._-]*';
const TAG = '[A-Za-z0-9][A-Za-z0-9._-]*';
const IMAGE = new RegExp(`^vm/${NAME_PART}(/${NAME_PART})*:${TAG}$`);
const VENDOR_IMAGE = new RegExp(`^webapp\\.io/${NAME_PART}(/${NAME_PART})*(:${TAG})?$`);
const DOCKER_IMAGE = new RegExp(`^${NAME_PART}(/${NAME_PART})*:${TAG}$`);
const OTHER_REPOSITORY = /^(github|gitlab|bitbucket)(\.com)?\/[^/]+\/[^/]+/i;

function parseFrom(d: Directive): Instruction | undefined {
  const words = d.wordsBetween(1, 1, 'exactly one base: vm/NAME:TAG or a path to another Layerfile');
  const word = words?.[0];
  if (word === undefined) return undefined;
  const value = word.value;
  if (value.startsWith('vm/')) {
    if (!IMAGE.test(value)) {
      const suggestion = /^vm\/[a-z0-9._/-]+$/.test(value) ? `${value}:latest` : undefined;
      return d.failAtWord(word, `invalid base image "${value}"`, {
        hint: 'a base image is vm/NAME:TAG with a lower-case name, e.g. vm/debian:12',
        suggestion,
      });
    }
    return d.make('from', quoteWord(value), { source: { type: 'image', name: value } });
  }
  if (value.startsWith('webapp.io/')) {
    if (!VENDOR_IMAGE.test(value)) {
      return d.failAtWord(word, `invalid base image "${value}"`, { hint: 'a webapp.io image is webapp.io/NAME[:TAG] with a lower-case name, e.g. webapp.io/node:18' });
    }
    return d.make('from', quoteWord(value), { source: { type: 'image', name: value } });
  }
  if (OTHER_REPOSITORY.test(value) || /@[0-9a-f]{7,40}$/.test(value)) {
    return d.failAtWord(word, `inheriting from another repository's Layerfile ("${value}") is not supported`, {
      hint: 'copy that Layerfile into this repository and write e.g. "FROM /ci/base" (the path of its directory), or start FROM vm/ubuntu:18.04 and CLONE what you need',
    });
  }
  if (DOCKER_IMAGE.test(value)) {
    const modern = `vm/${value}`;
    return d.failAtWord(word, `"${value}" is not a base image: images are named vm/NAME:TAG`, {
      hint: `write "FROM ${modern}" (old LayerCI accepted Docker-style names; write "FROM ./${value}" for a directory)`,
      suggestion: modern,
    });
  }
  return d.make('from', quoteWord(value), { source: { type: 'layerfile', path: value } });
}

// RUN: the command is the rest of the logical line exactly as written (trimmed); the shell sees it.
function parseRun(d: Directive, mode: 'normal' | 'background' | 'repeatable'): Instruction | undefined {
  const command = d.args;
  if (command === '') return d.missing(`${d.node.keyword} needs a command`);
  if (mode === 'normal') {
    // `RUN BACKGROUN x` would silently run a command called BACKGROUN; no real command looks like that.
    const firstWord = /^[A-Z]+(?=[ \t]|$)/.exec(command)?.[0];
    const intended = firstWord === undefined ? undefined : ['BACKGROUND', 'REPEATABLE'].find((mode) => editDistance(firstWord, mode) <= 2);
    if (firstWord !== undefined && intended !== undefined) {
      return d.fail(0, firstWord.length, `"RUN ${firstWord}" looks like a misspelt "RUN ${intended}"`, { suggestion: intended });
    }
  }
  return d.make('run', command, { mode, command });
}

function checkManyToDirectory(d: Directive, sources: Word[], dest: Word): boolean {
  if (sources.length > 1 && !dest.value.endsWith('/')) {
    d.failAtWord(dest, `with several sources the destination must be a directory ending in "/"`, { hint: `write "${dest.value}/"` });
    return false;
  }
  return true;
}

function parseCopy(d: Directive): Instruction | undefined {
  const words = d.wordsBetween(2, Infinity, 'a source and a destination: COPY src... dest');
  if (words === undefined) return undefined;
  const sources = words.slice(0, -1);
  const dest = words[words.length - 1];
  if (dest === undefined || !checkManyToDirectory(d, sources, dest)) return undefined;
  return d.make('copy', quoted(words), { sources: sources.map((w) => w.value), dest: dest.value });
}

// CLONE url [DEFAULT=branch] [src...] dest. No sources means the whole repository, recorded as ['.'].
// DEFAULT= may stand anywhere among the words, as in the vendor's grammar (`CLONE DEFAULT=main url
// dest`, `CLONE url src DEFAULT=main dest`); a quoted "DEFAULT=x" is a path, not the branch.
const BRANCH = /^[A-Za-z0-9_.][A-Za-z0-9_./-]*$/;

function parseClone(d: Directive): Instruction | undefined {
  const words = d.wordsBetween(2, Infinity, 'a repository and a destination: CLONE url [DEFAULT=branch] [src...] dest');
  if (words === undefined) return undefined;
  let defaultBranch: string | undefined;
  const positional: Word[] = [];
  for (const word of words) {
    if (!word.raw.startsWith('DEFAULT=')) {
      positional.push(word);
      continue;
    }
    if (defaultBranch !== undefined) return d.failAtWord(word, 'DEFAULT= may be given only once');
    defaultBranch = word.value.slice('DEFAULT='.length);
    if (!BRANCH.test(defaultBranch)) return d.failAtWord(word, `invalid default branch "${defaultBranch}"`);
  }
  const [url, ...rest] = positional;
  if (url === undefined) return d.missing('CLONE needs a repository and a destination');
  // A leading dash would reach git as an option.
  if (url.value.startsWith('-')) return d.failAtWord(url, 'the repository URL must not start with "-"');
  const dest = rest.pop();
  if (dest === undefined) return d.fail(d.args.length, 1, 'CLONE needs a destination after the repository');
  if (!checkManyToDirectory(d, rest, dest)) return undefined;
  const sources = rest.length === 0 ? ['.'] : rest.map((w) => w.value);
  // A path that starts with DEFAULT= stays quoted, or it would read back as the branch.
  const quotePath = (path: string): string => quoteWord(path, path.startsWith('DEFAULT='));
  const canonical = [
    quoteWord(url.value),
    ...(defaultBranch === undefined ? [] : [`DEFAULT=${defaultBranch}`]),
    ...[...sources, dest.value].map(quotePath),
  ].join(' ');
  return d.make('clone', canonical, { url: url.value, defaultBranch, sources, dest: dest.value });
}

function parseWorkdir(d: Directive): Instruction | undefined {
  const word = d.wordsBetween(1, 1, 'exactly one directory')?.[0];
  if (word === undefined) return undefined;
  return d.make('workdir', quoteWord(word.value), { dir: word.value });
}

// ENV K=V K2="v v" ...  or  ENV K some value (the rest of the line, quotes removed, blanks kept).
// After a K=V pair, `NAME value` pairs may follow (`ENV a=b c d`, as in the vendor's grammar tests).
// `$(...)` and backquoted parts are one word and stay literal text: nothing is run.
function parseEnv(d: Directive): Instruction | undefined {
  const words = d.words({ backslashEscapes: true, commandSubstitution: true });
  if (words === undefined) return undefined;
  const first = words[0];
  if (first === undefined) return d.missing('ENV needs NAME=value or NAME value');
  const vars: Array<{ name: string; value: string; raw: string }> = [];
  const addVar = (name: string, raw: string, rawOffset: number): boolean => {
    const value = parseEnvValue(raw);
    if (!value.ok) return d.fail(rawOffset + value.offset, 1, value.message) ?? false;
    vars.push({ name, value: displayEnvValue(raw), raw });
    return true;
  };

  if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(first.raw)) {
    const equals = first.raw.indexOf('=');
    if (equals > 0) return d.fail(first.offset, equals, `invalid variable name "${first.raw.slice(0, equals)}"`, { hint: 'names are letters, digits and _, not starting with a digit' });
    if (!ENV_NAME.test(first.raw)) return d.failAtWord(first, `invalid variable name "${first.raw}"`, { hint: 'names are letters, digits and _, not starting with a digit' });
    const rawOffset = words[1]?.offset;
    if (rawOffset === undefined) return d.fail(first.offset + first.raw.length, 1, `ENV ${first.raw} needs a value`, { hint: `write ENV ${first.raw}="" for an empty value` });
    if (!addVar(first.raw, d.args.slice(rawOffset), rawOffset)) return undefined;
  } else {
    for (let i = 0; i < words.length; i++) {
      const word = words[i] as Word;
      const equals = word.raw.indexOf('=');
      const name = equals < 0 ? word.raw : word.raw.slice(0, equals);
      const next = words[i + 1];
      if (equals < 0 && ENV_NAME.test(name) && next !== undefined) {
        // `NAME value`: the next word is the value.
        if (!addVar(name, next.raw, next.offset)) return undefined;
        i++;
        continue;
      }
      if (equals < 0 || !ENV_NAME.test(name)) {
        return d.failAtWord(word, `expected NAME=value, found "${word.raw}"`, {
          hint: 'quote values that contain spaces: NAME="a b"',
        });
      }
      if (!addVar(name, word.raw.slice(equals + 1), word.offset + equals + 1)) return undefined;
    }
  }
  return d.make('env', vars.map((v) => `${v.name}=${canonicalEnvValue(v.raw)}`).join(' '), { vars });
}

function parseEnvNames(d: Directive, kind: 'buildEnv' | 'secretEnv'): Instruction | undefined {
  const words = d.wordsBetween(1, Infinity, 'at least one variable name');
  if (words === undefined) return undefined;
  for (const word of words) {
    if (!ENV_NAME.test(word.raw)) {
      return d.failAtWord(word, `invalid variable name "${word.raw}"`, {
        hint: word.raw.includes('=') ? `${d.node.keyword} takes names only; their values come from the environment` : 'names are letters, digits and _, not starting with a digit',
      });
    }
  }
  return d.make(kind, words.map((w) => w.raw).join(' '), { names: words.map((w) => w.raw) });
}

function parseCache(d: Directive): Instruction | undefined {
  const words = d.wordsBetween(1, Infinity, 'at least one directory');
  if (words === undefined) return undefined;
  return d.make('cache', quoted(words), { dirs: words.map((w) => w.value) });
}

// CHECKPOINT (force a snapshot / re-enable), CHECKPOINT disabled, CHECKPOINT name.
const CHECKPOINT_NAME = /^[A-Za-z0-9_.-]+$/;

function parseCheckpoint(d: Directive): Instruction | undefined {
  const words = d.wordsBetween(0, 1, 'at most one argument: disabled or a name');
  if (words === undefined) return undefined;
  const word = words[0];
  if (word === undefined) return d.make('checkpoint', '', { mode: 'force', name: undefined });
  if (word.value === 'disabled') return d.make('checkpoint', 'disabled', { mode: 'disabled', name: undefined });
  if (word.value.toLowerCase() === 'disabled') {
    return d.failAtWord(word, `"${word.value}" would name a checkpoint`, { hint: 'write "disabled" in lower case to stop snapshots', suggestion: 'disabled' });
  }
  if (!CHECKPOINT_NAME.test(word.value)) return d.failAtWord(word, `invalid checkpoint name "${word.value}"`, { hint: 'names use A-Z a-z 0-9 _ . -' });
  return d.make('checkpoint', word.value, { mode: 'named', name: word.value });
}

function parseSplit(d: Directive): Instruction | undefined {
  const words = d.wordsBetween(1, 2, 'a count: SPLIT n or SPLIT UNORDERED n');
  if (words === undefined) return undefined;
  const [first, second] = words;
  if (first === undefined) return undefined;
  let countWord = first;
  if (second !== undefined) {
    if (/^[0-9]+$/.test(first.value)) return d.failAtWord(second, 'SPLIT takes a single count');
    if (first.value !== 'UNORDERED') {
      const suggestion = first.value.toUpperCase() === 'UNORDERED' ? 'UNORDERED' : closest(first.value, ['UNORDERED']);
      return d.failAtWord(first, `expected UNORDERED, found "${first.value}"`, { suggestion });
    }
    countWord = second;
  }
  if (!/^[0-9]+$/.test(countWord.value)) return d.failAtWord(countWord, `SPLIT count must be a whole number, found "${countWord.value}"`);
  const count = Number(countWord.value);
  if (count < 1 || count > MAX_SPLIT) return d.failAtWord(countWord, `SPLIT count must be between 1 and ${MAX_SPLIT}`);
  const unordered = second !== undefined;
  return d.make('split', `${unordered ? 'UNORDERED ' : ''}${count}`, { count, unordered });
}

// BUTTON message: free text, kept as written.
function parseButton(d: Directive): Instruction | undefined {
  if (d.args === '') return d.missing('BUTTON needs a message', { hint: 'e.g. BUTTON deploy to staging?' });
  return d.make('button', d.args, { message: d.args });
}

function parseWait(d: Directive): Instruction | undefined {
  const words = d.wordsBetween(1, Infinity, 'at least one path to another Layerfile');
  if (words === undefined) return undefined;
  return d.make('wait', quoted(words), { paths: words.map((w) => w.value) });
}

// SKIP REMAINING IF NAME=value [AND NAME2!=value ...]; operators = != =~ !=~ (JavaScript regular
// expressions, matched anywhere in the value unless anchored). Several SKIP lines act as OR.
// As in the vendor's reference and grammar, blanks may surround the operator
// (`GIT_COMMIT_TITLE =~ "\[skip tests\]"`, `LAYERCI_BRANCH!= main`), and a value is a bare word or
// quoted text with NO escapes inside the quotes: a regex keeps its backslashes as written.
const SKIP_NAME = /^[A-Za-z_][A-Za-z0-9_]*/;
const SKIP_OPERATOR = /^(!=~|=~|!=|=)/;
const isBlank = (c: string | undefined): boolean => c === ' ' || c === '\t';

function parseSkipRemainingIf(d: Directive): Instruction | undefined {
  const text = d.args;
  if (text === '') return d.missing('SKIP REMAINING IF needs a condition', { hint: 'e.g. SKIP REMAINING IF GIT_BRANCH!=main' });
  const conditions: SkipCondition[] = [];
  let i = 0;
  const skipBlanks = (): void => {
    while (isBlank(text[i])) i++;
  };
  const wordAt = (at: number): string => text.slice(at).split(/[ \t]/)[0] ?? '';
  for (;;) {
    const start = i;
    const name = SKIP_NAME.exec(text.slice(i))?.[0];
    if (name !== undefined) {
      i += name.length;
      skipBlanks();
    }
    const op = name === undefined ? undefined : SKIP_OPERATOR.exec(text.slice(i))?.[0];
    if (name === undefined || op === undefined) {
      const word = wordAt(start);
      return d.fail(start, word.length, `expected a condition like NAME=value, found "${word}"`);
    }
    i += op.length;
    skipBlanks();
    const value = readSkipValue(text, i);
    if (!value.ok) return d.fail(value.offset, 1, value.message, { hint: 'close the quote on the same line' });
    i = value.end;
    if (op === '=~' || op === '!=~') {
      try {
        new RegExp(value.value);
      } catch (error) {
        return d.fail(start, i - start, `invalid regular expression "${value.value}"`, { hint: error instanceof Error ? error.message : undefined });
      }
    }
    conditions.push({ name, op: op as SkipOperator, value: value.value });

    skipBlanks();
    if (i >= text.length) break;
    const connectorAt = i;
    const connector = wordAt(i);
    if (connector !== 'AND') {
      if (connector.toUpperCase() === 'OR' || connector === '||') {
        return d.fail(connectorAt, connector.length, 'only AND is supported', { hint: 'for OR, write one SKIP REMAINING IF line per alternative' });
      }
      const suggestion = connector.toUpperCase() === 'AND' || connector === '&&' ? 'AND' : undefined;
      return d.fail(connectorAt, connector.length, `expected AND between conditions, found "${connector}"`, { suggestion, hint: suggestion ? undefined : 'join conditions with AND' });
    }
    i += connector.length;
    skipBlanks();
    if (i >= text.length) return d.fail(connectorAt, connector.length, 'AND must be followed by a condition');
  }
  const canonical = conditions.map((c) => `${c.name}${c.op}${quoteSkipValue(c.value)}`).join(' AND ');
  return d.make('skipRemainingIf', canonical, { conditions });
}

/** A condition's value at `start`: bare and quoted parts up to a blank; quotes have no escapes. */
function readSkipValue(text: string, start: number): { ok: true; value: string; end: number } | { ok: false; offset: number; message: string } {
  let value = '';
  let i = start;
  while (i < text.length && !isBlank(text[i])) {
    const c = text[i] as string;
    if (c === '"' || c === "'") {
      const close = text.indexOf(c, i + 1);
      if (close < 0) return { ok: false, offset: i, message: `unterminated ${c === '"' ? 'double' : 'single'} quote` };
      value += text.slice(i + 1, close);
      i = close + 1;
    } else {
      value += c;
      i++;
    }
  }
  return { ok: true, value, end: i };
}

/** Canonical spelling of a condition value that reads back the same under readSkipValue. */
function quoteSkipValue(value: string): string {
  if (/^[^\s"']+$/.test(value)) return value;
  // Double-quote everything except double quotes themselves, which go in single quotes.
  return value
    .split('"')
    .map((part) => `"${part}"`)
    .join(`'"'`);
}

// EXPOSE WEBSITE [scheme://](localhost|HOST|PORT)[:port] [path] [rewrite]. Scheme http (default) or
// https; port defaults to the scheme's; a bare number is a port on localhost; a single trailing "/" on
// the address is accepted.
const HOST = /^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/;

function parsePort(text: string): number | undefined {
  if (!/^[0-9]{1,5}$/.test(text)) return undefined;
  const port = Number(text);
  return port >= 1 && port <= 65535 ? port : undefined;
}

function parseExposeWebsite(d: Directive): Instruction | undefined {
  const words = d.wordsBetween(1, 3, 'an address and optionally a path and a rewrite: EXPOSE WEBSITE localhost:8000 [/path] [/rewrite]');
  if (words === undefined) return undefined;
  const [address, pathWord, rewriteWord] = words;
  if (address === undefined) return undefined;
  const schemeMatch = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(address.value);
  const scheme = schemeMatch?.[1] ?? 'http';
  if (scheme !== 'http' && scheme !== 'https') {
    return d.fail(address.offset, scheme.length, `unsupported scheme "${scheme}"`, { hint: 'use http:// or https://', suggestion: closest(scheme, ['http', 'https']) });
  }
  const hostPort = address.value.slice(schemeMatch?.[0].length ?? 0).replace(/\/$/, '');
  const slash = hostPort.indexOf('/');
  if (slash >= 0) {
    const start = address.value.length - hostPort.length + slash;
    return d.fail(address.offset + start, address.value.length - start, 'the path goes in its own argument', {
      suggestion: `${address.value.slice(0, start)} ${address.value.slice(start)}`,
    });
  }
  let host = 'localhost';
  let port: number | undefined = scheme === 'https' ? 443 : 80;
  if (/^[0-9]+$/.test(hostPort)) {
    port = parsePort(hostPort);
  } else {
    const colon = hostPort.lastIndexOf(':');
    host = colon < 0 ? hostPort : hostPort.slice(0, colon);
    if (colon >= 0) port = parsePort(hostPort.slice(colon + 1));
    if (host === '') {
      return d.failAtWord(address, `missing host in "${address.value}"`, { suggestion: `localhost${hostPort}` });
    }
    if (!HOST.test(host)) {
      return d.failAtWord(address, `invalid address "${address.value}"`, { hint: 'write [http[s]://]localhost:PORT, or just PORT; put a path in the next argument' });
    }
  }
  if (port === undefined) return d.failAtWord(address, `invalid port in "${address.value}"`, { hint: 'ports are 1-65535' });
  // The vendor's runner reads `api` as `/api` (expose_website.go); so does strata.
  const asPath = (word: Word | undefined): string | undefined => (word === undefined ? undefined : word.value.startsWith('/') ? word.value : `/${word.value}`);
  const target: ExposeWebsiteTarget = { scheme, host, port, path: asPath(pathWord) ?? '/', rewrite: asPath(rewriteWord) };
  const canonical = [`${scheme}://${host}:${port}`, target.path, ...(target.rewrite === undefined ? [] : [target.rewrite])].map((word) => quoteWord(word)).join(' ');
  return d.make('exposeWebsite', canonical, { target });
}

// EXPOSE TCP :port [:dest]; the colons are optional (strata is lenient), dest defaults to port.
function parseExposeTcp(d: Directive): Instruction | undefined {
  const words = d.wordsBetween(1, 2, 'a port and optionally a destination port: EXPOSE TCP :5432 [:15432]');
  if (words === undefined) return undefined;
  const ports: number[] = [];
  for (const word of words) {
    const port = parsePort(word.value.replace(/^:/, ''));
    if (port === undefined) return d.failAtWord(word, `invalid port "${word.value}"`, { hint: 'ports are 1-65535, written :PORT' });
    ports.push(port);
  }
  const port = ports[0] ?? 0;
  const dest = ports[1] ?? port;
  return d.make('exposeTcp', `:${port} :${dest}`, { port, dest });
}

// MEMORY n with unit K, M or G (binary: 1K = 1024). Lenient spelling: any case, optional B or iB
// (`2G`, `2g`, `2GB`, `2GiB`), decimals allowed (`1.5G`, rounded down to a byte).
const MEMORY = /^([0-9]+(?:\.[0-9]+)?)([KMG])(?:I?B)?$/i;
const UNIT_BYTES: Record<string, number> = { K: 1024, M: 1024 ** 2, G: 1024 ** 3 };

function parseMemory(d: Directive): Instruction | undefined {
  const word = d.wordsBetween(1, 1, 'one size, e.g. MEMORY 2G')?.[0];
  if (word === undefined) return undefined;
  const match = MEMORY.exec(word.value);
  if (match === null) {
    const hint = /^[0-9.]+$/.test(word.value) ? 'add a unit: K, M or G' : 'write a number and K, M or G, e.g. 2G or 512M';
    return d.failAtWord(word, `invalid memory size "${word.value}"`, { hint });
  }
  const bytes = Math.floor(Number(match[1]) * (UNIT_BYTES[(match[2] ?? 'K').toUpperCase()] ?? 1));
  if (bytes < 1 || !Number.isSafeInteger(bytes)) return d.failAtWord(word, `memory size "${word.value}" is out of range`);
  return d.make('memory', canonicalMemory(bytes), { bytes, text: word.value });
}

/** The largest unit that divides the size exactly (`2G`, `1536M`), so the canonical text parses back. */
function canonicalMemory(bytes: number): string {
  for (const unit of ['G', 'M', 'K']) {
    const size = UNIT_BYTES[unit] ?? 1;
    if (bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return `${bytes / 1024}K`;
}

const USER_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;

function parseUser(d: Directive): Instruction | undefined {
  const word = d.wordsBetween(1, 1, 'exactly one user name')?.[0];
  if (word === undefined) return undefined;
  if (!USER_NAME.test(word.value) || word.value.length > MAX_USER_NAME) {
    return d.failAtWord(word, `invalid user name "${word.value}"`, { hint: `use A-Z a-z 0-9 . _ - (not starting with . or -), at most ${MAX_USER_NAME} characters` });
  }
  return d.make('user', word.value, { name: word.value });
}

function parseSetupFile(d: Directive): Instruction | undefined {
  const words = d.wordsBetween(1, Infinity, 'at least one file');
  if (words === undefined) return undefined;
  return d.make('setupFile', quoted(words), { paths: words.map((w) => w.value) });
}

// LABEL display_name=x status=merge|hidden|display. `display` (one status per runner, as without the
// label) is written in real Layerfiles for the hosted product; strata accepts it and does the default.
const LABEL_KEYS = ['display_name', 'status'] as const;
const STATUS_VALUES = ['merge', 'hidden', 'display'];

function parseLabel(d: Directive): Instruction | undefined {
  const words = d.wordsBetween(1, Infinity, 'at least one key=value: display_name=... or status=merge|hidden|display');
  if (words === undefined) return undefined;
  const entries: Array<{ key: 'display_name' | 'status'; value: string }> = [];
  for (const word of words) {
    const equals = word.raw.indexOf('=');
    const key = equals < 0 ? word.raw : word.raw.slice(0, equals);
    const known = LABEL_KEYS.find((k) => k === key);
    if (equals < 0 || known === undefined) {
      const suggestion = closest(key, LABEL_KEYS);
      return d.fail(word.offset, equals < 0 ? word.raw.length : equals, equals < 0 ? `expected key=value, found "${word.raw}"` : `unknown label "${key}"`, {
        hint: suggestion ? undefined : 'labels are display_name and status',
        suggestion,
      });
    }
    const value = unquote(word.raw.slice(equals + 1));
    if (known === 'status' && !STATUS_VALUES.includes(value)) {
      return d.fail(word.offset + equals + 1, word.raw.length - equals - 1, `status must be merge, hidden or display, found "${value}"`, { suggestion: closest(value, STATUS_VALUES) });
    }
    if (value === '') return d.failAtWord(word, `empty ${known}`);
    entries.push({ key: known, value });
  }
  return d.make('label', entries.map((e) => `${e.key}=${quoteWord(e.value)}`).join(' '), { entries });
}

// Unknown directives: did-you-mean over every keyword, comparing as many leading words as the keyword
// has (and fewer, so `BUILDENV` finds `BUILD ENV`); Dockerfile habits get a pointed hint.
const DOCKERFILE_HABITS: Record<string, string> = {
  ADD: 'use COPY (strata does not fetch URLs or unpack archives)',
  ARG: 'use ENV for values, or BUILD ENV to make an environment variable part of the cache key',
  CMD: 'a Layerfile has no default command; use RUN BACKGROUND to leave a process running',
  ENTRYPOINT: 'a Layerfile has no entrypoint; use RUN BACKGROUND to leave a process running',
  EXPOSE: 'use EXPOSE WEBSITE for HTTP or EXPOSE TCP for a raw port',
  VOLUME: 'use CACHE for directories that persist across runs',
  BUILD: 'did you mean "BUILD ENV"?',
  SECRET: 'did you mean "SECRET ENV"?',
  SETUP: 'did you mean "SETUP FILE"?',
  SKIP: 'did you mean "SKIP REMAINING IF"?',
};

function reportUnknownDirective(d: Directive): void {
  const text = d.node.text;
  const firstWord = d.node.keyword;
  // Old LayerCI wrote `THEN RUN ...`; the reference has no such prefix.
  const afterThen = /^THEN[ \t]+(.*)$/i.exec(text)?.[1];
  if (afterThen !== undefined && KEYWORDS.some((k) => afterThen.startsWith(`${k.split(' ')[0]}`))) {
    d.failAtKeyword(`"${firstWord}" is an old LayerCI prefix that Layerfiles no longer accept`, { hint: `remove it: write "${shorten(afterThen)}"` }, firstWord.length);
    return;
  }
  let best: { keyword: Keyword; length: number; distance: number; words: number } | undefined;
  for (let words = 1; words <= 3; words++) {
    const span = new RegExp(`^[^ \\t]+(?:[ \\t]+[^ \\t]+){${words - 1}}`).exec(text)?.[0];
    if (span === undefined) break;
    // `RUN_BACKGROUND`, `Skip remaining if`: the same keyword spelt the way old tools and grammars did.
    const candidate = span.split(/[ \t_]+/).join(' ').toUpperCase();
    for (const keyword of KEYWORDS) {
      const distance = editDistance(candidate, keyword);
      if (distance > maxSuggestionDistance(candidate)) continue;
      // Closer wins; on a tie the longer span (`Run background` -> RUN BACKGROUND, not RUN).
      if (best === undefined || distance < best.distance || (distance === best.distance && words > best.words)) {
        best = { keyword, length: span.length, distance, words };
      }
    }
  }
  if (best === undefined) {
    d.failAtKeyword(`unknown directive "${firstWord}"`, { hint: DOCKERFILE_HABITS[firstWord] ?? LEGACY_DIRECTIVES[firstWord] }, firstWord.length);
    return;
  }
  const written = text.slice(0, best.length);
  if (best.distance === 0) {
    // Only the spelling of the keyword differs: show the whole line as it must be written.
    const modern = `${best.keyword}${text.slice(best.length)}`;
    d.failAtKeyword(`unknown directive "${written}": keywords are upper-case words separated by blanks`, { hint: `write "${shorten(modern)}"`, suggestion: best.keyword }, best.length);
    return;
  }
  d.failAtKeyword(`unknown directive "${written}"`, { suggestion: best.keyword }, best.length);
}

/** Directives of the vendor's other tools that Layerfiles for the hosted product never had. */
const LEGACY_DIRECTIVES: Record<string, string> = {
  AWS: 'AWS belongs to the vendor\'s open-source runner only; use RUN with the aws CLI, and SECRET ENV for its credentials',
};

/** A line for a hint: at most 72 characters. */
function shorten(line: string): string {
  return line.length <= 72 ? line : `${line.slice(0, 69)}...`;
}
