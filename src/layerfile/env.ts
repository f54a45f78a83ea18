// ENV values: quote removal and `$VAR` / `${VAR}` expansion, with shell-like rules (strata):
// - bare text: `\x` is a literal x (so `\$` is a literal dollar), `$NAME` and `${NAME}` expand;
// - "double quotes": `\"`, `\\`, `\$` are escapes, `$NAME` and `${NAME}` expand;
// - 'single quotes': everything literal.
// An unset variable expands to the empty string. Only plain `${NAME}` is supported (no `${NAME:-x}`).
// The parser keeps each value as written (`raw`); the engine expands it against the current env.
import { StrataError } from '../errors.js';

export type EnvValuePart = { kind: 'text'; text: string } | { kind: 'variable'; name: string; text: string };

export type EnvValueResult = { ok: true; parts: EnvValuePart[] } | { ok: false; offset: number; message: string };

export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function parseEnvValue(raw: string): EnvValueResult {
  const parts: EnvValuePart[] = [];
  const literal = (text: string): void => {
    const last = parts[parts.length - 1];
    if (last?.kind === 'text') last.text += text;
    else parts.push({ kind: 'text', text });
  };
  let quote: '"' | undefined;
  let i = 0;
  while (i < raw.length) {
    const c = raw[i] ?? '';
    if (c === "'" && quote === undefined) {
      const end = raw.indexOf("'", i + 1);
      if (end < 0) return { ok: false, offset: i, message: 'unterminated single quote' };
      literal(raw.slice(i + 1, end));
      i = end + 1;
    } else if (c === '"') {
      quote = quote === undefined ? '"' : undefined;
      i++;
    } else if (c === '\\' && i + 1 < raw.length && (quote === undefined || '"\\$'.includes(raw[i + 1] ?? ''))) {
      literal(raw[i + 1] ?? '');
      i += 2;
    } else if (c === '$' && raw[i + 1] === '{') {
      const end = raw.indexOf('}', i + 2);
      const name = end < 0 ? '' : raw.slice(i + 2, end);
      if (!ENV_NAME.test(name)) {
        return { ok: false, offset: i, message: 'bad substitution: only ${NAME} is supported' };
      }
      parts.push({ kind: 'variable', name, text: raw.slice(i, end + 1) });
      i = end + 1;
    } else if (c === '$' && /[A-Za-z_]/.test(raw[i + 1] ?? '')) {
      const name = /^[A-Za-z_][A-Za-z0-9_]*/.exec(raw.slice(i + 1))?.[0] ?? '';
      parts.push({ kind: 'variable', name, text: `$${name}` });
      i += 1 + name.length;
    } else {
      literal(c);
      i++;
    }
  }
  if (quote !== undefined) return { ok: false, offset: raw.lastIndexOf('"'), message: 'unterminated double quote' };
  return { ok: true, parts };
}

function partsOf(raw: string): EnvValuePart[] {
  const parsed = parseEnvValue(raw);
  if (!parsed.ok) throw new StrataError('STRATA_LAYERFILE_SYNTAX', `invalid ENV value ${JSON.stringify(raw)}: ${parsed.message}`);
  return parsed.parts;
}

/** The value with quotes removed and variables left as written (`$HOME`), for display. */
export function displayEnvValue(raw: string): string {
  return partsOf(raw).map((part) => part.text).join('');
}

/** Expands a raw ENV value (as the parser keeps it) against an environment. */
export function expandEnvValue(raw: string, lookup: (name: string) => string | undefined): string {
  return partsOf(raw)
    .map((part) => (part.kind === 'text' ? part.text : (lookup(part.name) ?? '')))
    .join('');
}

/**
 * A canonical spelling that differs exactly when the meaning differs: `"a b"` and `'a b'` are the same
 * value, but `"$X"` (expands) and `'$X'` (literal) are not. Plain values stay bare.
 */
export function canonicalEnvValue(raw: string): string {
  const parts = partsOf(raw);
  const first = parts[0];
  if (parts.length === 1 && first?.kind === 'text' && /^[A-Za-z0-9_.,:/@%+=-]+$/.test(first.text)) return first.text;
  const body = parts
    .map((part) => (part.kind === 'variable' ? `\${${part.name}}` : part.text.replace(/["\\$]/g, (c) => `\\${c}`)))
    .join('');
  return `"${body}"`;
}
