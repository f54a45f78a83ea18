// Workers: the `strata worker` hosts that run this server's jobs, with whether each answers now (a
// heartbeat within the last 30 s), the jobs it runs, its host, and when it was last seen.
import type { WorkerSummary } from '../../server/api/types.js';
import { api, errorText } from '../api.js';
import { formatAgo } from '../format.js';
import { Link } from '../router.js';
import { usePolling } from '../usePolling.js';

/** A worker heartbeats every 10 s: silent for longer than this, it is shown as offline. */
const ONLINE_WITHIN_MS = 30_000;

/** Its state, and the job status whose colours the badge borrows. */
function stateOf(worker: WorkerSummary, now: number): { label: string; tone: 'CANCELLED' | 'FAILURE' | 'RUNNING' | 'SUCCESS' } {
  if (worker.revokedAt !== null) return { label: 'revoked', tone: 'CANCELLED' };
  if (worker.lastSeenAt === null) return { label: 'never seen', tone: 'CANCELLED' };
  if (now - worker.lastSeenAt > ONLINE_WITHIN_MS) return { label: 'offline', tone: 'FAILURE' };
  return runningOf(worker).length > 0 ? { label: 'busy', tone: 'RUNNING' } : { label: 'idle', tone: 'SUCCESS' };
}

function runningOf(worker: WorkerSummary): string[] {
  const running = worker.info.running;
  return Array.isArray(running) ? running.filter((id): id is string => typeof id === 'string') : [];
}

export function WorkersPage() {
  const { value: workers, error } = usePolling(() => api<{ workers: WorkerSummary[] }>('GET', '/api/workers').then((r) => r.workers), 5000, []);
  const now = Date.now();
  return (
    <div className="page">
      <div className="page-head">
        <h1>Workers</h1>
      </div>
      {error !== null && <div className="alert alert-error">{errorText(error)}</div>}
      <section className="card">
        <table className="table" data-testid="workers">
          <thead>
            <tr>
              <th>Name</th>
              <th>State</th>
              <th>Running</th>
              <th>Host</th>
              <th>Last seen</th>
            </tr>
          </thead>
          <tbody>
            {workers?.map((worker) => {
              const state = stateOf(worker, now);
              return (
                <tr key={worker.name} data-worker={worker.name}>
                  <td>
                    <b>{worker.name}</b>
                    <div className="muted small">added {formatAgo(worker.createdAt, now)}</div>
                  </td>
                  <td>
                    <span className={`badge status-${state.tone}`} data-testid="worker-state">
                      <span className="badge-dot" />
                      {state.label}
                    </span>
                  </td>
                  <td>
                    {runningOf(worker).map((id) => (
                      <div key={id}>
                        <Link href={`/jobs/${encodeURIComponent(id)}`}>{id}</Link>
                      </div>
                    ))}
                  </td>
                  <td>{typeof worker.info.host === 'string' ? worker.info.host : <span className="muted">–</span>}</td>
                  <td className="nowrap">{worker.lastSeenAt === null ? <span className="muted">never</span> : formatAgo(worker.lastSeenAt, now)}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
        {workers?.length === 0 && (
          <div className="empty">
            No workers: this server runs its jobs itself. Add one with <code>strata worker add &lt;name&gt;</code>, then run <code>strata worker --server … --token …</code> on its host.
          </div>
        )}
      </section>
    </div>
  );
}
