// Display helpers shared by the pages.
import type { JobStatus, StepStatus } from '../server/api/types.js';

export function formatDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m ${Math.round(seconds % 60)}s`;
  return `${Math.floor(minutes / 60)}h ${minutes % 60}m`;
}

export function formatAgo(time: number, now = Date.now()): string {
  const seconds = Math.max(0, Math.round((now - time) / 1000));
  if (seconds < 45) return 'just now';
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 24) return `${hours} h ago`;
  return new Date(time).toLocaleDateString();
}

export const shortCommit = (commit: string): string => commit.slice(0, 8);

export const isFinished = (status: JobStatus): boolean => status === 'SUCCESS' || status === 'FAILURE' || status === 'ERROR' || status === 'CANCELLED';

export const JOB_STATUS_LABEL: Record<JobStatus, string> = {
  NEW: 'Queued',
  WAITING_PARENTS: 'Waiting',
  RUNNING: 'Running',
  SUCCESS: 'Passed',
  FAILURE: 'Failed',
  ERROR: 'Error',
  CANCELLED: 'Cancelled',
};

export const STEP_STATUS_ICON: Record<StepStatus, string> = {
  pending: '○',
  cached: '↺',
  running: '●',
  done: '✓',
  failed: '✕',
  skipped: '⤼',
};

/** The share of steps taken from the cache, 0..1 (null when nothing counted yet). */
export function cachedShare(stepsCached: number, stepsRan: number): number | null {
  const total = stepsCached + stepsRan;
  return total === 0 ? null : stepsCached / total;
}
