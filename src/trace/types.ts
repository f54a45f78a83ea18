// What one step did to the paths under its machine's COPY/CLONE destinations. Produced by a
// TraceRecorder (src/trace/), stored in the cache index, intersected with a commit's changes by the
// planner (src/plan/). Paths are absolute machine paths with forward slashes, e.g. '/root/app/src/a.ts',
// never ending in '/' (except the root '/'). Each list is sorted and without duplicates.

export interface StepTrace {
  /** Files whose content the step observed: opened for reading (or read-write), executed, mmapped. */
  read: string[];
  /** Directories whose membership the step observed (readdir). */
  listed: string[];
  /** Paths whose metadata the step observed after a successful lookup: type, size, mode, symlink target (readlink). */
  statted: string[];
  /** Paths the step looked up that did not exist (failed lookups, ENOENT). */
  absent: string[];
  /** Paths the step created, wrote, truncated, deleted, renamed (both sides), chmod/chown'ed or linked. */
  written: string[];
}

export const emptyStepTrace = (): StepTrace => ({ read: [], listed: [], statted: [], absent: [], written: [] });
