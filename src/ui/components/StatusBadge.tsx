import type { JobStatus, StepStatus } from '../../server/api/types.js';
import { JOB_STATUS_LABEL, STEP_STATUS_ICON } from '../format.js';

export function StatusBadge({ status }: { status: JobStatus }) {
  return (
    <span className={`badge status-${status}`} data-status={status}>
      <span className="badge-dot" />
      {JOB_STATUS_LABEL[status]}
    </span>
  );
}

export function StepIcon({ status }: { status: StepStatus }) {
  return (
    <span className={`step-icon step-${status}`} title={status} aria-label={status}>
      {STEP_STATUS_ICON[status]}
    </span>
  );
}

/** A thin bar: the cached share of a run's steps (green) against those that ran (blue). */
export function CacheBar({ cached, ran }: { cached: number; ran: number }) {
  const total = cached + ran;
  if (total === 0) return <span className="muted">—</span>;
  const percent = Math.round((cached / total) * 100);
  return (
    <span className="cache-bar" title={`${cached} cached, ${ran} ran`}>
      <span className="cache-bar-track">
        <span className="cache-bar-fill" style={{ width: `${percent}%` }} />
      </span>
      <span className="cache-bar-label">{percent}% cached</span>
    </span>
  );
}
