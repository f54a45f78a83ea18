// Layerfile syntax errors: a location (file:line:column), the offending source line, and a hint.
import { StrataError } from '../errors.js';

export interface LayerfileErrorInit {
  file: string;
  /** 1-based physical line. */
  line: number;
  /** 1-based column (UTF-16 code units, like editors' default). */
  column: number;
  /** How many characters the carets underline (at least 1). */
  length?: number | undefined;
  /** The physical source line the error points into, without its line ending. */
  sourceLine: string;
  message: string;
  hint?: string | undefined;
  /** A machine-usable replacement for the underlined text (e.g. `RUN` for `RUNN`), for quick fixes. */
  suggestion?: string | undefined;
}

export class LayerfileError extends StrataError {
  readonly file: string;
  readonly line: number;
  readonly column: number;
  readonly length: number;
  readonly sourceLine: string;
  readonly suggestion: string | undefined;

  constructor(init: LayerfileErrorInit) {
    // A suggestion without its own hint reads as the usual did-you-mean.
    const hint = init.hint ?? (init.suggestion === undefined ? undefined : `did you mean "${init.suggestion}"?`);
    super('STRATA_LAYERFILE_SYNTAX', init.message, { hint });
    this.name = 'LayerfileError';
    this.file = init.file;
    this.line = init.line;
    this.column = init.column;
    this.length = Math.max(1, init.length ?? 1);
    this.sourceLine = init.sourceLine;
    this.suggestion = init.suggestion;
  }

  /**
   * Compiler-style text:
   * ```
   * services/api/Layerfile:3:1: unknown directive "RUNN"
   *   RUNN echo hi
   *   ^^^^
   *   hint: did you mean "RUN"?
   * ```
   */
  format(): string {
    const shown = printable(this.sourceLine.trimEnd());
    // Keep tabs in the caret line's indentation so the carets line up under tab-indented text.
    const indent = shown.slice(0, this.column - 1).replace(/[^\t]/g, ' ').padEnd(this.column - 1, ' ');
    const lines = [`${this.file}:${this.line}:${this.column}: ${this.message}`, `  ${shown}`, `  ${indent}${'^'.repeat(this.length)}`];
    if (this.hint !== undefined) lines.push(`  hint: ${this.hint}`);
    return lines.join('\n');
  }
}

/** Control characters would garble a terminal; show them as their Unicode "control picture" (same width). */
function printable(text: string): string {
  return text.replace(/[\u0000-\u0008\u000a-\u001f\u007f]/g, (c) => (c === '\u007f' ? '\u2421' : String.fromCharCode(0x2400 + c.charCodeAt(0))));
}
