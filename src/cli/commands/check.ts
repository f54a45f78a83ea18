// `strata check [dir]`: parse every Layerfile of a repo, build the graph, and show what would run, in
// which order, under which runner id, and every error with file:line:col. Runs nothing.
import { resolve } from 'node:path';
import { StrataError } from '../../errors.js';
import { parseLayerfile } from '../../layerfile/index.js';
import { buildGraph, type GraphNode } from '../../layerfile/graph.js';
import type { Layerfile } from '../../layerfile/types.js';
import { isStep } from '../../plan/definitionKey.js';
import { readLayerfiles } from '../../repo/discover.js';

/** Exit code when any Layerfile has an error (same as STRATA_LAYERFILE_* in main.ts). */
export const CHECK_FAILED_EXIT_CODE = 3;

export interface CheckOptions {
  json?: boolean | undefined;
}

export interface CheckedError {
  code: string;
  file: string | null;
  line: number | null;
  column: number | null;
  message: string;
  hint: string | null;
  /** Human-readable text: the error's own format() when it has one, else `file:line:col: message`. */
  formatted: string;
}

export interface CheckedNode {
  path: string;
  runnerId: string;
  /** null when the Layerfile cannot be scheduled. (null, not undefined: the report is also JSON.) */
  level: number | null;
  from: { type: 'image'; name: string } | { type: 'layerfile'; path: string } | null;
  waits: string[];
  steps: Array<{ line: number; column: number; kind: string; text: string }>;
}

export interface CheckReport {
  ok: boolean;
  root: string;
  layerfiles: string[];
  /** levels[0] = runner ids of level 1, and so on. */
  levels: Array<{ level: number; layerfiles: string[]; runnerIds: string[] }>;
  nodes: CheckedNode[];
  /** Layerfiles that cannot be scheduled (on a cycle or behind a missing dependency). */
  unscheduled: string[];
  errors: CheckedError[];
}

export async function checkRepo(dir: string): Promise<CheckReport> {
  const root = resolve(dir);
  const sources = await readLayerfiles(root);
  const layerfiles: Layerfile[] = [];
  const errors: CheckedError[] = [];
  for (const source of sources) {
    const parsed = parseLayerfile(source.text, source.path);
    layerfiles.push(parsed.layerfile);
    errors.push(...parsed.errors.map(describeError));
  }
  const graph = buildGraph(layerfiles);
  errors.push(...graph.errors.map(describeError));
  if (sources.length === 0) {
    errors.push(describeError(new StrataError('STRATA_USAGE', `no file named Layerfile found under ${root}`)));
  }
  errors.sort(
    (a, b) =>
      compare(a.file ?? '', b.file ?? '') || (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0),
  );

  const byPath = new Map(graph.nodes.map((n) => [n.path, n]));
  return {
    ok: errors.length === 0,
    root,
    layerfiles: sources.map((s) => s.path),
    levels: graph.levels.map((paths, i) => ({
      level: i + 1,
      layerfiles: paths,
      runnerIds: paths.map((p) => byPath.get(p)!.runnerId),
    })),
    nodes: graph.nodes.map(describeNode),
    unscheduled: graph.nodes.filter((n) => n.level === undefined).map((n) => n.path),
    errors,
  };
}

/** Runs the command: prints the report (text or JSON) to `write`, returns the exit code. */
export async function checkCommand(
  dir: string,
  options: CheckOptions,
  write: (text: string) => void = (text) => process.stdout.write(text),
): Promise<number> {
  const report = await checkRepo(dir);
  write(options.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
  return report.ok ? 0 : CHECK_FAILED_EXIT_CODE;
}

export function formatReport(report: CheckReport): string {
  const out: string[] = [];
  const count = report.layerfiles.length;
  out.push(`${count} Layerfile${count === 1 ? '' : 's'} in ${report.root}`);
  for (const path of report.layerfiles) out.push(`  ${path}`);
  const nodes = new Map(report.nodes.map((n) => [n.path, n]));
  const describe = (node: CheckedNode): void => {
    const deps: string[] = [];
    if (node.from) deps.push(`FROM ${node.from.type === 'image' ? node.from.name : node.from.path}`);
    if (node.waits.length > 0) deps.push(`WAIT ${node.waits.join(', ')}`);
    out.push(`  ${node.runnerId} (${node.path})${deps.length > 0 ? `  ${deps.join('; ')}` : ''}`);
    for (const step of node.steps) out.push(`    ${step.line}: ${step.text}`);
  };
  for (const level of report.levels) {
    out.push('', `Level ${level.level}`);
    for (const path of level.layerfiles) describe(nodes.get(path)!);
  }
  if (report.unscheduled.length > 0) {
    out.push('', 'Not scheduled (see errors)');
    for (const path of report.unscheduled) describe(nodes.get(path)!);
  }
  out.push('');
  if (report.errors.length === 0) {
    out.push('OK: no errors');
  } else {
    out.push(`${report.errors.length} error${report.errors.length === 1 ? '' : 's'}:`);
    for (const error of report.errors) out.push(error.formatted);
  }
  return `${out.join('\n')}\n`;
}

function describeNode(node: GraphNode): CheckedNode {
  return {
    path: node.path,
    runnerId: node.runnerId,
    level: node.level ?? null,
    from: node.parent ?? null,
    waits: node.waits,
    steps: node.layerfile.instructions
      .filter(isStep)
      .map((i) => ({ line: i.range.line, column: i.range.column, kind: i.kind, text: i.canonical })),
  };
}

/** Any StrataError, located or not; located ones (parser, graph) bring their own format(). */
function describeError(error: StrataError): CheckedError {
  const located = error as StrataError & { file?: unknown; line?: unknown; column?: unknown; format?: unknown };
  const file = typeof located.file === 'string' ? located.file : null;
  const line = typeof located.line === 'number' ? located.line : null;
  const column = typeof located.column === 'number' ? located.column : null;
  let formatted: string;
  if (typeof located.format === 'function') {
    formatted = String((located.format as () => unknown).call(error));
  } else {
    const where = file === null ? 'strata' : `${file}:${line ?? 1}:${column ?? 1}`;
    formatted = `${where}: ${error.message}${error.hint ? `\n  hint: ${error.hint}` : ''}`;
  }
  return { code: error.code, file, line, column, message: error.message, hint: error.hint ?? null, formatted };
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
