// Small builders for planner tests: cached chains, traces, changes and new-run steps.
import type { InstructionKind } from '../../src/layerfile/types.js';
import type {
  CachedChain,
  CachedStep,
  CopyRecord,
  PathState,
  PlanStep,
  SnapshotName,
  SourceChange,
} from '../../src/plan/types.js';
import type { StepTrace } from '../../src/trace/types.js';

export const snap = (name: string): SnapshotName => name as SnapshotName;

export function trace(partial: Partial<StepTrace> = {}): StepTrace {
  const sorted = (paths: string[] | undefined): string[] => [...new Set(paths ?? [])].sort();
  return {
    read: sorted(partial.read),
    listed: sorted(partial.listed),
    statted: sorted(partial.statted),
    absent: sorted(partial.absent),
    written: sorted(partial.written),
  };
}

export interface StepSpec {
  key: string;
  line: number;
  kind?: InstructionKind;
  text?: string;
  repeatable?: boolean;
  /** Snapshot name in the cached chain; null for none. Default: `s<index>`. */
  snapshot?: string | null;
  trace?: StepTrace | null;
  copies?: CopyRecord[];
  succeeded?: boolean;
}

export function planSteps(specs: StepSpec[]): PlanStep[] {
  return specs.map((spec) => ({
    definitionKey: spec.key,
    line: spec.line,
    kind: spec.kind ?? 'run',
    text: spec.text ?? `step at line ${spec.line}`,
    repeatable: spec.repeatable ?? false,
  }));
}

export function chain(chainId: string, specs: StepSpec[], complete = true): CachedChain {
  const steps: CachedStep[] = specs.map((spec, index) => ({
    definitionKey: spec.key,
    snapshot: spec.snapshot === undefined ? snap(`${chainId}-s${index}`) : spec.snapshot === null ? null : snap(spec.snapshot),
    trace: spec.trace === undefined ? trace() : spec.trace,
    copies: spec.copies ?? [],
    repeatable: spec.repeatable ?? false,
    succeeded: spec.succeeded ?? true,
  }));
  return { chainId, sourceTreeId: `tree-${chainId}`, steps, complete };
}

export const file = (contentId: string, mode = 0o100644, size = contentId.length): PathState => ({
  type: 'file',
  mode,
  size,
  contentId,
});
export const dir = (mode = 0o40755): PathState => ({ type: 'dir', mode, size: 0, contentId: '' });
export const symlink = (target: string): PathState => ({ type: 'symlink', mode: 0o120777, size: target.length, contentId: target });

export const modified = (path: string, before = 'old', after = 'new'): SourceChange => ({ path, before: file(before), after: file(after) });
export const added = (path: string, state: PathState = file('new')): SourceChange => ({ path, before: null, after: state });
export const deleted = (path: string, state: PathState = file('old')): SourceChange => ({ path, before: state, after: null });
