// Splitting directive arguments into words, with quotes.
//
// Rules (strata): words are separated by spaces or tabs. `"..."` and `'...'` quote (a word may mix
// quoted and bare parts: `a"b c"d` is `ab cd`). Inside double quotes `\"` and `\\` are escapes and any
// other backslash is literal; single quotes are fully literal. OUTSIDE quotes a backslash is literal
// (so `SKIP REMAINING IF GIT_TAG=~^v\d+` keeps its regex) except when `backslashEscapes` is set (ENV,
// whose values follow shell rules: `\$` is a literal dollar, `\ ` a literal space).

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
      const c = text[i] ?? '';
      if (c === '"' || c === "'") {
        const quoted = readQuoted(text, i);
        if (quoted === undefined) return { ok: false, offset: i, message: `unterminated ${c === '"' ? 'double' : 'single'} quote` };
        value += quoted.value;
        i = quoted.end;
      } else if (c === '\\' && options.backslashEscapes && i + 1 < text.length) {
        value += text[i + 1];
        i += 2;
      } else {
        value += c;
        i++;
      }
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
    const c = text[i] ?? '';
    const quoted = c === '"' || c === "'" ? readQuoted(text, i) : undefined;
    if (quoted !== undefined) {
      value += quoted.value;
      i = quoted.end;
    } else if (c === '\\' && options.backslashEscapes && i + 1 < text.length) {
      value += text[i + 1];
      i += 2;
    } else {
      value += c;
      i++;
    }
  }
  return value;
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
