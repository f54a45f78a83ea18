// The repo graph: which Layerfile inherits from (FROM) or waits for (WAIT) which, in what order they
// can run (DAG levels), and each one's runner id. Pure: it is given parsed Layerfiles, reads nothing.
import { posix } from 'node:path';
import { StrataError } from '../errors.js';
import type { Instruction, Layerfile } from './types.js';

const LAYERFILE_NAME = 'Layerfile';
const ROOT_RUNNER_ID = 'main-layerfile';

/** A graph problem (missing parent, path outside the repo, cycle), located at the offending line. */
export class LayerfileGraphError extends StrataError {
  readonly file: string;
  readonly line: number;
  readonly column: number;

  constructor(at: { file: string; line: number; column: number }, message: string, hint?: string) {
    super('STRATA_LAYERFILE_GRAPH', message, { hint });
    this.name = 'LayerfileGraphError';
    this.file = at.file;
    this.line = at.line;
    this.column = at.column;
  }

  /** `file:line:col: message` plus an indented hint line, like the parser's LayerfileError. */
  format(): string {
    const head = `${this.file}:${this.line}:${this.column}: ${this.message}`;
    return this.hint ? `${head}\n  hint: ${this.hint}` : head;
  }
}

/** What a Layerfile starts from, with a Layerfile parent resolved to its repo-relative path. */
export type ResolvedParent = { type: 'image'; name: string } | { type: 'layerfile'; path: string };

export interface GraphNode {
  /** Repo-relative posix path, e.g. `services/api/Layerfile`. */
  path: string;
  layerfile: Layerfile;
  runnerId: string;
  /** undefined when the FROM is missing (a parse error) or names a Layerfile that does not resolve. */
  parent: ResolvedParent | undefined;
  /** Resolved Layerfile paths this one waits for (existing ones only), sorted, no duplicates. */
  waits: string[];
  /** Every resolved dependency: the Layerfile parent and the waits, sorted, no duplicates. */
  dependsOn: string[];
  /**
   * 1 = no dependencies; otherwise 1 + the highest level among dependencies. undefined when the node
   * cannot be scheduled: it has an unresolved dependency, is on a cycle, or depends on such a node.
   */
  level: number | undefined;
}

export interface LayerfileGraph {
  /** Sorted by path. */
  nodes: GraphNode[];
  /** levels[0] holds the paths of level 1, and so on; each level sorted by path. */
  levels: string[][];
  errors: LayerfileGraphError[];
}

/** Where a FROM/WAIT path points: the Layerfile path it names, or why it names none. */
type Resolution = { ok: true; path: string } | { ok: false; reason: 'escapes'; joined: string };

/**
 * Resolves a FROM/WAIT path written in the Layerfile at `fromFile`. `/x` is from the repo root, anything
 * else from the Layerfile's directory; a path to a directory means that directory's Layerfile.
 */
export function resolveLayerfilePath(fromFile: string, written: string): Resolution {
  const dir = posix.dirname(fromFile);
  const joined = written.startsWith('/') ? posix.normalize(`.${written}`) : posix.join(dir, written);
  const trimmed = joined.replace(/\/+$/, '');
  if (trimmed === '..' || trimmed.startsWith('../') || posix.isAbsolute(trimmed)) {
    return { ok: false, reason: 'escapes', joined: trimmed };
  }
  const isFile = trimmed === LAYERFILE_NAME || trimmed.endsWith(`/${LAYERFILE_NAME}`);
  if (isFile) return { ok: true, path: trimmed };
  return { ok: true, path: trimmed === '.' || trimmed === '' ? LAYERFILE_NAME : `${trimmed}/${LAYERFILE_NAME}` };
}

/** One FROM or WAIT reference, kept with the instruction that made it (for error locations). */
interface Edge {
  from: string;
  to: string;
  instruction: Instruction;
}

export function buildGraph(layerfiles: readonly Layerfile[]): LayerfileGraph {
  const sorted = [...layerfiles].sort((a, b) => compare(a.path, b.path));
  const known = new Set(sorted.map((l) => l.path));
  const errors: LayerfileGraphError[] = [];
  const edges = new Map<string, Edge[]>();
  const unresolved = new Set<string>();
  const partial = new Map<string, { parent: ResolvedParent | undefined; waits: string[] }>();

  for (const layerfile of sorted) {
    const out: Edge[] = [];
    let parent: ResolvedParent | undefined;
    let seenFrom = false;
    const waits = new Set<string>();

    const follow = (instruction: Instruction, written: string, what: 'FROM' | 'WAIT'): string | undefined => {
      const resolution = resolveLayerfilePath(layerfile.path, written);
      if (!resolution.ok) {
        errors.push(
          new LayerfileGraphError(
            instruction.range,
            `${what} ${written} points outside the repository (resolves to ${resolution.joined})`,
            'paths are relative to the Layerfile directory, or to the repo root when they start with /',
          ),
        );
        return undefined;
      }
      if (!known.has(resolution.path)) {
        errors.push(
          new LayerfileGraphError(
            instruction.range,
            `${what} ${written}: no Layerfile at ${resolution.path}`,
            suggestNear(resolution.path, known, what === 'FROM' ? written : undefined),
          ),
        );
        return undefined;
      }
      out.push({ from: layerfile.path, to: resolution.path, instruction });
      return resolution.path;
    };

    for (const instruction of layerfile.instructions) {
      if (instruction.kind === 'from') {
        // The parser reports a FROM that is not first or not alone; the graph uses the first one.
        if (seenFrom) continue;
        seenFrom = true;
        if (instruction.source.type === 'image') {
          parent = { type: 'image', name: instruction.source.name };
        } else {
          const target = follow(instruction, instruction.source.path, 'FROM');
          if (target === undefined) unresolved.add(layerfile.path);
          else parent = { type: 'layerfile', path: target };
        }
      } else if (instruction.kind === 'wait') {
        for (const written of instruction.paths) {
          const target = follow(instruction, written, 'WAIT');
          if (target === undefined) unresolved.add(layerfile.path);
          else waits.add(target);
        }
      }
    }
    edges.set(layerfile.path, out);
    partial.set(layerfile.path, { parent, waits: [...waits].sort(compare) });
  }

  const onCycle = findCycles(sorted.map((l) => l.path), edges, errors);
  const levels = computeLevels(sorted.map((l) => l.path), edges, unresolved, onCycle);
  const runnerIds = assignRunnerIds(sorted);

  const nodes: GraphNode[] = sorted.map((layerfile) => {
    const { parent, waits } = partial.get(layerfile.path)!;
    const dependsOn = [...new Set((edges.get(layerfile.path) ?? []).map((e) => e.to))].sort(compare);
    return {
      path: layerfile.path,
      layerfile,
      runnerId: runnerIds.get(layerfile.path)!,
      parent,
      waits,
      dependsOn,
      level: levels.get(layerfile.path),
    };
  });

  const byLevel: string[][] = [];
  for (const node of nodes) {
    if (node.level === undefined) continue;
    while (byLevel.length < node.level) byLevel.push([]);
    byLevel[node.level - 1]!.push(node.path);
  }
  return { nodes, levels: byLevel, errors };
}

/**
 * Tarjan's strongly connected components; every component with more than one node, or a node that
 * depends on itself, is a cycle. Reports one error per cycle, at the edge leaving its smallest path,
 * and returns the set of nodes on cycles.
 */
function findCycles(paths: string[], edges: Map<string, Edge[]>, errors: LayerfileGraphError[]): Set<string> {
  const index = new Map<string, number>();
  const lowLink = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  let counter = 0;

  const visit = (node: string): void => {
    index.set(node, counter);
    lowLink.set(node, counter);
    counter++;
    stack.push(node);
    onStack.add(node);
    for (const { to } of edges.get(node) ?? []) {
      if (!index.has(to)) {
        visit(to);
        lowLink.set(node, Math.min(lowLink.get(node)!, lowLink.get(to)!));
      } else if (onStack.has(to)) {
        lowLink.set(node, Math.min(lowLink.get(node)!, index.get(to)!));
      }
    }
    if (lowLink.get(node) === index.get(node)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      components.push(component);
    }
  };
  for (const path of paths) if (!index.has(path)) visit(path);

  const onCycle = new Set<string>();
  const cycleErrors: LayerfileGraphError[] = [];
  for (const component of components) {
    const start = component.sort(compare)[0]!;
    const selfLoop = (edges.get(start) ?? []).some((e) => e.to === start);
    if (component.length === 1 && !selfLoop) continue;
    for (const member of component) onCycle.add(member);
    const cycle = shortestCycle(start, new Set(component), edges);
    const chain = cycle.map((e) => e.from).concat(start).join(' -> ');
    const first = cycle[0]!.instruction;
    cycleErrors.push(
      new LayerfileGraphError(
        first.range,
        `dependency cycle: ${chain}`,
        'FROM and WAIT must form a DAG: remove one of these references',
      ),
    );
  }
  cycleErrors.sort((a, b) => compare(a.file, b.file) || a.line - b.line);
  errors.push(...cycleErrors);
  return onCycle;
}

/** Breadth-first search inside one component for the shortest edge path from `start` back to itself. */
function shortestCycle(start: string, members: Set<string>, edges: Map<string, Edge[]>): Edge[] {
  const cameBy = new Map<string, Edge>();
  let frontier = [start];
  while (frontier.length > 0) {
    const next: string[] = [];
    for (const node of frontier) {
      for (const edge of edges.get(node) ?? []) {
        if (!members.has(edge.to)) continue;
        if (edge.to === start) {
          const path = [edge];
          for (let at = node; at !== start; at = cameBy.get(at)!.from) path.unshift(cameBy.get(at)!);
          return path;
        }
        if (!cameBy.has(edge.to)) {
          cameBy.set(edge.to, edge);
          next.push(edge.to);
        }
      }
    }
    frontier = next;
  }
  throw new Error(`internal: no cycle through ${start}`);
}

/** Level of every schedulable node; nodes on cycles or with unresolved deps (or downstream) get none. */
function computeLevels(
  paths: string[],
  edges: Map<string, Edge[]>,
  unresolved: Set<string>,
  onCycle: Set<string>,
): Map<string, number | undefined> {
  const levels = new Map<string, number | undefined>();
  for (const node of onCycle) levels.set(node, undefined);
  // Off-cycle paths are acyclic and cycle nodes are pre-set, so this recursion terminates.
  const levelOf = (node: string): number | undefined => {
    if (levels.has(node)) return levels.get(node);
    let level: number | undefined = unresolved.has(node) ? undefined : 1;
    for (const { to } of edges.get(node) ?? []) {
      const depLevel = levelOf(to);
      level = depLevel === undefined || level === undefined ? undefined : Math.max(level, depLevel + 1);
    }
    levels.set(node, level);
    return level;
  };
  for (const path of paths) levelOf(path);
  return levels;
}

/**
 * Runner ids: LABEL display_name (the last one given), else up to two parent directory names joined
 * by `-`, else `main-layerfile` for the root Layerfile. Colliding ids are made unique deterministically:
 * an explicit display name beats a derived id, then path order decides; the first keeps the id, later
 * ones get the smallest `-2`, `-3`, ... suffix that no Layerfile wants as its own id.
 */
function assignRunnerIds(sorted: Layerfile[]): Map<string, string> {
  const wanted = new Map(sorted.map((l) => [l.path, naturalRunnerId(l)] as const));
  const priority = [...sorted].sort((a, b) => Number(!wanted.get(a.path)!.explicit) - Number(!wanted.get(b.path)!.explicit));
  const taken = new Set([...wanted.values()].map((w) => w.id));
  const claimed = new Set<string>();
  const assigned = new Map<string, string>();
  for (const layerfile of priority) {
    const { id } = wanted.get(layerfile.path)!;
    if (!claimed.has(id)) {
      claimed.add(id);
      assigned.set(layerfile.path, id);
      continue;
    }
    let n = 2;
    while (taken.has(`${id}-${n}`)) n++;
    taken.add(`${id}-${n}`);
    assigned.set(layerfile.path, `${id}-${n}`);
  }
  return assigned;
}

function naturalRunnerId(layerfile: Layerfile): { id: string; explicit: boolean } {
  let displayName: string | undefined;
  for (const instruction of layerfile.instructions) {
    if (instruction.kind !== 'label') continue;
    for (const entry of instruction.entries) if (entry.key === 'display_name') displayName = entry.value;
  }
  if (displayName !== undefined && displayName !== '') return { id: displayName, explicit: true };
  const dir = posix.dirname(layerfile.path);
  if (dir === '.' || dir === '') return { id: ROOT_RUNNER_ID, explicit: false };
  return { id: dir.split('/').slice(-2).join('-'), explicit: false };
}

/** Names that, written bare after FROM (`FROM ubuntu`), are an old LayerCI / Docker image habit. */
const IMAGE_HABITS = new Set(['ubuntu', 'debian', 'alpine', 'node', 'python', 'golang', 'ruby', 'centos', 'fedora']);

/** A hint naming a Layerfile whose directory has the same last name, if there is one. */
function suggestNear(missing: string, known: Set<string>, written?: string): string | undefined {
  if (written !== undefined && IMAGE_HABITS.has(written)) {
    return `for a base image write "FROM vm/${written === 'ubuntu' ? 'ubuntu:18.04' : `${written}:TAG`}" (a bare name is a directory with a Layerfile)`;
  }
  const wantedDir = posix.basename(posix.dirname(missing));
  const near = [...known].filter((p) => posix.basename(posix.dirname(p)) === wantedDir).sort(compare);
  if (near.length > 0) return `did you mean ${near.join(' or ')}?`;
  return 'a FROM/WAIT path names a directory containing a Layerfile (or the Layerfile itself)';
}

/** Plain code-unit order: the same on every machine and locale. */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
