// Phase 1 of parsing: Layerfile text -> generic syntax nodes (keyword + argument text) that remember
// where they came from. Phase 2 (parse.ts) turns nodes into typed instructions.
//
// Lexical rules (LAYERFILE.md, with the choices strata makes where the original was silent):
// - One directive per logical line. A physical line ending in `\` (optionally followed by spaces or
//   tabs) is joined to the next physical line with NO separator (the `\` and trailing blanks go away).
//   Any trailing backslash continues the line, even `\\`, as in Dockerfiles.
// - A line whose first non-blank character is `#` is a comment. A `#` that starts a word later on the
//   line (after a blank, outside quotes) starts a trailing comment in every directive but RUN (the
//   shell gets it) and BUTTON (free text): parse.ts strips those, as the vendor's grammar skips them.
// - Inside a continued directive, comment lines are skipped and the continuation goes on (as in
//   Dockerfiles), but a BLANK line ends the directive: `RUN a \` followed by an empty line does not
//   silently swallow the next directive.
// - Leading blanks before a keyword are allowed. Keywords are exact and case-sensitive; the words of a
//   multi-word keyword (`RUN BACKGROUND`, `SKIP REMAINING IF`, ...) may be separated by spaces or tabs.
// - Control characters other than tab (NUL, a stray CR, ...) are errors; `\r\n` line endings and a
//   leading byte-order mark are accepted.
import { LayerfileError } from './errors.js';
import type { SourceRange } from './types.js';

export const KEYWORDS = [
  'FROM',
  'RUN',
  'RUN BACKGROUND',
  'RUN REPEATABLE',
  'COPY',
  'CLONE',
  'WORKDIR',
  'ENV',
  'BUILD ENV',
  'SECRET ENV',
  'CACHE',
  'CHECKPOINT',
  'SPLIT',
  'BUTTON',
  'WAIT',
  'SKIP REMAINING IF',
  'EXPOSE WEBSITE',
  'EXPOSE TCP',
  'MEMORY',
  'USER',
  'SETUP FILE',
  'LABEL',
] as const;
export type Keyword = (typeof KEYWORDS)[number];

/** Where a piece of a logical line starts: its offset in `SyntaxNode.text` and its physical position. */
export interface Segment {
  offset: number;
  line: number;
  column: number;
}

export interface SyntaxNode {
  /** The keyword with single spaces (`RUN BACKGROUND`) when known, else the first word as written. */
  keyword: string;
  known: boolean;
  /** The arguments: everything after the keyword and the blanks after it, trailing blanks removed. */
  args: string;
  /** Offset of `args` within `text`. */
  argsOffset: number;
  /** 1-based column where the arguments start (on the physical line given by positionAt). */
  argsColumn: number;
  /** The logical line from the keyword on, continuations joined. */
  text: string;
  /** Physical pieces of `text`, in order (one per joined physical line). */
  segments: Segment[];
  /** True when the syntax phase already reported an error inside this node (e.g. a NUL byte). */
  broken: boolean;
  range: SourceRange;
}

export interface SyntaxTree {
  file: string;
  /** Physical lines without line endings (a final newline does not start an extra line). */
  lines: string[];
  nodes: SyntaxNode[];
  errors: LayerfileError[];
}

// Longest keywords first, so `RUN BACKGROUND x` is not read as `RUN` with command `BACKGROUND x`.
const KEYWORD_PATTERNS: Array<{ keyword: Keyword; pattern: RegExp }> = [...KEYWORDS]
  .sort((a, b) => b.split(' ').length - a.split(' ').length)
  .map((keyword) => ({ keyword, pattern: new RegExp(`^${keyword.split(' ').join('[ \\t]+')}(?=[ \\t]|$)`) }));

const CONTINUATION = /\\[ \t]*$/;
const CONTROL_CHARACTER = /[\u0000-\u0008\u000a-\u001f\u007f]/;

export function parseSyntax(source: string, file: string): SyntaxTree {
  const text = source.startsWith('\uFEFF') ? source.slice(1) : source;
  const lines = text.split(/\r?\n/);
  if (lines.length > 1 && lines[lines.length - 1] === '') lines.pop();
  const nodes: SyntaxNode[] = [];
  const errors: LayerfileError[] = [];

  let index = 0;
  while (index < lines.length) {
    const first = lines[index] ?? '';
    const indent = first.length - first.replace(/^[ \t]+/, '').length;
    if (indent === first.length || first[indent] === '#') {
      index++;
      continue;
    }
    const startLine = index + 1;
    const segments: Segment[] = [];
    let joined = '';
    let piece = first.slice(indent);
    let pieceColumn = indent + 1;
    for (;;) {
      const continues = CONTINUATION.test(piece);
      const content = continues ? piece.replace(CONTINUATION, '') : piece;
      segments.push({ offset: joined.length, line: index + 1, column: pieceColumn });
      joined += content;
      index++;
      if (!continues) break;
      // Skip whole-line comments inside the continuation; a blank line or the end of file ends it.
      while (index < lines.length && /^[ \t]*#/.test(lines[index] ?? '')) index++;
      const next = lines[index];
      if (next === undefined || next.trim() === '') break;
      piece = next;
      pieceColumn = 1;
    }
    const endLine = segments[segments.length - 1]?.line ?? startLine;

    const match = KEYWORD_PATTERNS.find(({ pattern }) => pattern.test(joined));
    const keywordText = match ? (joined.match(match.pattern)?.[0] ?? '') : (joined.match(/^[^ \t]+/)?.[0] ?? '');
    const argsOffset = keywordText.length + (joined.slice(keywordText.length).match(/^[ \t]*/)?.[0].length ?? 0);
    const node: SyntaxNode = {
      keyword: match ? match.keyword : keywordText,
      known: match !== undefined,
      args: joined.slice(argsOffset).replace(/[ \t]+$/, ''),
      argsOffset,
      argsColumn: 0,
      text: joined,
      segments,
      broken: false,
      range: { file, line: startLine, column: indent + 1, endLine },
    };
    node.argsColumn = positionAt(node, argsOffset).column;

    const control = CONTROL_CHARACTER.exec(joined);
    if (control) {
      const code = control[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0');
      errors.push(errorAt(lines, node, control.index, 1, `control character U+${code} is not allowed`, {
        hint: 'Layerfiles are text; remove the character (a CR is only accepted as part of a CRLF line ending)',
      }));
      node.broken = true;
    }
    nodes.push(node);
  }
  return { file, lines, nodes, errors };
}

/** Physical line and column of an offset in `node.text` (offsets past the end point just after it). */
export function positionAt(node: SyntaxNode, offset: number): { line: number; column: number } {
  let segment = node.segments[0] ?? { offset: 0, line: node.range.line, column: node.range.column };
  for (const candidate of node.segments) {
    if (candidate.offset <= offset) segment = candidate;
  }
  return { line: segment.line, column: segment.column + (offset - segment.offset) };
}

/**
 * An error pointing at `length` characters from `offset` of `node.text`; the underline is clipped to
 * the physical line it starts on.
 */
export function errorAt(
  lines: readonly string[],
  node: SyntaxNode,
  offset: number,
  length: number,
  message: string,
  extra: { hint?: string | undefined; suggestion?: string | undefined } = {},
): LayerfileError {
  const { line, column } = positionAt(node, offset);
  const sourceLine = lines[line - 1] ?? '';
  const visible = sourceLine.replace(CONTINUATION, '').length - (column - 1);
  return new LayerfileError({
    file: node.range.file,
    line,
    column,
    length: Math.max(1, Math.min(length, visible)),
    sourceLine,
    message,
    hint: extra.hint,
    suggestion: extra.suggestion,
  });
}
