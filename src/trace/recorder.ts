// The TraceRecorder seam: records, step by step, what a machine did to the paths under one COPY/CLONE
// destination. Implementations: FUSE (src/trace/fuse.ts, exact) and NullRecorder (records nothing,
// for untraced runs and benchmarks). Chosen in the composition file of each entry point.
import type { StepTrace } from './types.js';
import { emptyStepTrace } from './types.js';

export interface AttachOptions {
  /** The directory to trace, as seen in the mount namespace the recorder works in (see below). */
  dir: string;
  /** The directory's absolute path inside the machine, e.g. '/root/app'; traces report paths under it. */
  machinePrefix: string;
  /** When set, `dir` is resolved in (and the tracer mounted into) this process's mount namespace. */
  mountNamespacePid?: number;
}

export interface TraceSession {
  /**
   * Starts attributing touches to `step`. Touches between the previous endStep and this call are
   * attributed to this step too (a background process may act between steps; over-attribution only
   * costs a rerun, missing a touch could cost a wrong cache hit).
   */
  beginStep(step: number): Promise<void>;
  /** Returns what happened since the previous endStep (or the attach): sorted, deduplicated lists. */
  endStep(): Promise<StepTrace>;
  /** Unmounts and stops. Safe to call twice. */
  detach(): Promise<void>;
}

export interface TraceRecorder {
  attach(opts: AttachOptions): Promise<TraceSession>;
}

/** Records nothing: every step's trace is empty. */
export class NullRecorder implements TraceRecorder {
  async attach(_opts: AttachOptions): Promise<TraceSession> {
    return {
      beginStep: async () => {},
      endStep: async () => emptyStepTrace(),
      detach: async () => {},
    };
  }
}

/** Sorts and deduplicates each list of a raw trace (the StepTrace invariant). */
export function normalizeStepTrace(raw: StepTrace): StepTrace {
  const clean = (paths: string[]): string[] => [...new Set(paths)].sort();
  return {
    read: clean(raw.read),
    listed: clean(raw.listed),
    statted: clean(raw.statted),
    absent: clean(raw.absent),
    written: clean(raw.written),
  };
}
