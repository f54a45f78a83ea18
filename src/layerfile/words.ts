// Splitting directive arguments into words, with quotes.
//
// Rules (strata): words are separated by spaces or tabs. `"..."` and `'...'` quote (a word may mix
// quoted and bare parts: `a"b c"d` is `ab cd`). Inside double quotes `\"` and `\\` are escapes and any
// other backslash is literal; single quotes are fully literal. OUTSIDE quotes a backslash is literal
// (so `SKIP REMAINING IF GIT_TAG=~^v\d+` keeps its regex) except when `backslashEscapes` is set (ENV,
// whose values follow shell rules: `\$` is a literal dollar, `\ ` a literal space). With
// `commandSubstitution` (ENV again), `$(...)` and backquoted text stay one word even with blanks inside,
// as in the vendor's grammar (`ENV B=$(echo hello)`).

export interface Word {
  /** The word after quote removal. */
  value: string;
  /** The word exactly as written, quotes included. */
  raw: string;
  /** Offset of the word's first character in the argument text. */
  offset: number;
}

export type SplitResult =
  | { ok: true; words: Word[] }
  | { ok: false; offset: number; message: string };

export interface SplitOptions {
  backslashEscapes?: boolean;
  commandSubstitution?: boolean;
}

export function splitWords(text: string, options: SplitOptions = {}): SplitResult {
  const words: Word[] = [];
  let i = 0;
  while (i < text.length) {
    if (text[i] === ' ' || text[i] === '\t') {
      i++;
      continue;
    }
    const start = i;
    let value = '';
    while (i < text.length && text[i] !== ' ' && text[i] !== '\t') {
      const piece = readPiece(text, i, options);
      if (piece === undefined) return { ok: false, offset: i, message: `unterminated ${text[i] === '"' ? 'double' : 'single'} quote` };
      value += piece.value;
      i = piece.end;
    }
    words.push({ value, raw: text.slice(start, i), offset: start });
  }
  return { ok: true, words };
}

/** Quote removal for a piece of text that is known to be correctly quoted; blanks are kept as they are. */
export function unquote(text: string, options: SplitOptions = {}): string {
  let value = '';
  let i = 0;
  while (i < text.length) {
    // An unclosed quote cannot occur in checked text; should one slip through, it stays literal.
    const piece = readPiece(text, i, options) ?? { value: text[i] ?? '', end: i + 1 };
    value += piece.value;
    i = piece.end;
  }
  return value;
}

/**
 * The next piece of a word at `i`: a quoted part, a backslash-escaped character (with
 * `backslashEscapes`), or one plain character. Undefined for a quote that is never closed.
 */
function readPiece(text: string, i: number, options: SplitOptions): { value: string; end: number } | undefined {
  const c = text[i] ?? '';
  if (c === '"' || c === "'") return readQuoted(text, i);
  if (c === '\\' && options.backslashEscapes && i + 1 < text.length) return { value: text[i + 1] ?? '', end: i + 2 };
  if (options.commandSubstitution) {
    const end = substitutionEnd(text, i);
    // Kept as written (the text is not run): the value is the literal `$(...)`.
    if (end !== undefined) return { value: text.slice(i, end), end };
  }
  return { value: c, end: i + 1 };
}

/** End (exclusive) of a `$(...)` (nested parentheses counted) or backquoted part starting at `i`. */
function substitutionEnd(text: string, i: number): number | undefined {
  if (text[i] === '`') {
    const close = text.indexOf('`', i + 1);
    return close < 0 ? undefined : close + 1;
  }
  if (text[i] !== '$' || text[i + 1] !== '(') return undefined;
  let depth = 0;
  for (let j = i + 1; j < text.length; j++) {
    if (text[j] === '(') depth++;
    else if (text[j] === ')' && --depth === 0) return j + 1;
  }
  return undefined;
}

/**
 * Where a trailing comment starts in directive arguments: a `#` at the start of a word (the start of
 * the text, or after a blank), outside quotes. `text.length` when there is none. As in the vendor's
 * grammar, `COPY . . # all of it` copies `.` to `.`; `COPY a#b c` still copies a file called `a#b`.
 */
export function trailingCommentStart(text: string, options: SplitOptions = {}): number {
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '#' && (i === 0 || text[i - 1] === ' ' || text[i - 1] === '\t')) return i;
    if (c === '"' || c === "'") {
      // An unclosed quote is reported by splitWords; here it just runs to the end.
      i = readQuoted(text, i)?.end ?? text.length;
      continue;
    }
    i += c === '\\' && options.backslashEscapes ? 2 : 1;
  }
  return text.length;
}

/** Reads the quoted part starting at `start` (a quote character); undefined when it is not closed. */
function readQuoted(text: string, start: number): { value: string; end: number } | undefined {
  const quote = text[start];
  let value = '';
  let i = start + 1;
  while (i < text.length) {
    const c = text[i] ?? '';
    if (c === quote) return { value, end: i + 1 };
    if (quote === '"' && c === '\\' && (text[i + 1] === '"' || text[i + 1] === '\\')) {
      value += text[i + 1];
      i += 2;
      continue;
    }
    value += c;
    i++;
  }
  return undefined;
}

/** A word as canonical text: bare when that reads back the same (and not `always`), else double-quoted. */
export function quoteWord(value: string, always = false): string {
  if (!always && /^[^\s"'\\]+$/.test(value)) return value;
  return `"${value.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}
