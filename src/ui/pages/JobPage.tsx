// One run: header with actions, the Layerfile DAG, the selected runner's steps, buttons, previews, live
// log and debug terminal. State = GET /api/jobs/:id, then kept live by the SSE stream of job events.
import { lazy, Suspense, useEffect, useReducer, useState } from 'react';
import type { JobDetail, JobEvent, JobSummary } from '../../server/api/types.js';
import { api, errorText } from '../api.js';
import { LogView } from '../components/LogView.js';
import { RunnerDag } from '../components/RunnerDag.js';
import { CacheBar, StatusBadge } from '../components/StatusBadge.js';
import { StepList } from '../components/StepList.js';
import { formatAgo, formatDuration, isFinished, shortCommit } from '../format.js';
import { applyEvent, defaultRunner, initialJobState, mergeDetail, type JobState } from '../jobState.js';
import { Link, navigate } from '../router.js';

// xterm.js is big and only needed for a failed runner: load it on demand
const DebugTerminal = lazy(() => import('../components/DebugTerminal.js').then((m) => ({ default: m.DebugTerminal })));

type Action = { type: 'loaded'; job: JobDetail } | { type: 'event'; seq: number; event: JobEvent } | { type: 'refreshed'; job: JobDetail };

function reducer(state: JobState | null, action: Action): JobState | null {
  switch (action.type) {
    case 'loaded':
      return initialJobState(action.job);
    case 'refreshed':
      return state ? mergeDetail(state, action.job) : initialJobState(action.job);
    case 'event':
      return state ? applyEvent(state, action.seq, action.event) : state;
  }
}

export function JobPage({ id }: { id: string }) {
  const [state, dispatch] = useReducer(reducer, null);
  const [error, setError] = useState<string | null>(null);
  const [selected, setSelected] = useState<string | null>(null);
  const [terminalFor, setTerminalFor] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  // Load the detail, then follow the event stream (EventSource resumes with Last-Event-ID by itself).
  useEffect(() => {
    let closed = false;
    let source: EventSource | undefined;
    const refresh = () =>
      api<{ job: JobDetail }>('GET', `/api/jobs/${encodeURIComponent(id)}`).then(
        ({ job }) => !closed && dispatch({ type: 'refreshed', job }),
        () => {},
      );
    api<{ job: JobDetail }>('GET', `/api/jobs/${encodeURIComponent(id)}`).then(
      ({ job }) => {
        if (closed) return;
        dispatch({ type: 'loaded', job });
        source = new EventSource(`/api/jobs/${encodeURIComponent(id)}/events`);
        source.onmessage = (message) => {
          const event = JSON.parse(message.data as string) as JobEvent;
          dispatch({ type: 'event', seq: Number(message.lastEventId) || 0, event });
          // some fields (debuggable, runner durations) only exist in the detail
          if (event.type === 'runnerEnd' || event.type === 'end') void refresh();
          if (event.type === 'end') source?.close();
        };
      },
      (caught: unknown) => setError(errorText(caught)),
    );
    return () => {
      closed = true;
      source?.close();
    };
  }, [id]);

  const job = state?.job;
  useEffect(() => {
    if (job && (selected === null || !job.runners.some((r) => r.runner === selected))) setSelected(defaultRunner(job.runners));
  }, [job, selected]);

  if (error) return <div className="page"><div className="alert alert-error">{error}</div></div>;
  if (!state || !job) return <div className="page muted">Loading…</div>;

  const runner = job.runners.find((r) => r.runner === selected) ?? null;
  const finished = isFinished(job.status);

  const act = async (path: string, body?: unknown, goToNew = false) => {
    setBusy(true);
    try {
      const result = await api<{ job: JobSummary }>('POST', path, body ?? {});
      if (goToNew) navigate(`/jobs/${result.job.id}`);
    } catch (caught) {
      alert(errorText(caught));
    } finally {
      setBusy(false);
    }
  };
  const base = `/api/jobs/${encodeURIComponent(job.id)}`;
  // every waiting BUTTON of the job, whichever runner is selected
  const waiting = job.runners.flatMap((r) => r.buttons.filter((b) => b.state === 'waiting').map((button) => ({ runner: r.runner, button })));

  return (
    <div className="page">
      <div className="crumbs">
        <Link href="/">Runs</Link> <span>/</span> <span>{job.repo}</span> <span>/</span> <code>{shortCommit(job.commit)}</code>
      </div>
      <section className="card job-head">
        <div className="job-head-main">
          <div className="job-title-row">
            <StatusBadge status={job.status} />
            <h1 className="job-title" data-testid="job-title">{job.title || '(no title)'}</h1>
          </div>
          <div className="job-meta">
            <span><b>{job.repo}</b></span>
            <span className="branch">{job.branch}</span>
            <code title={job.commit}>{shortCommit(job.commit)}</code>
            <span>{job.author}</span>
            <span className="chip">{job.trigger}</span>
            {job.worker !== undefined && (
              <span className="chip" data-testid="job-worker" title="the strata worker that runs this job">
                on {job.worker}
              </span>
            )}
            {job.options.noCache && <span className="chip chip-warn">no cache</span>}
            <span>{formatAgo(job.createdAt)}</span>
            <span title="duration">{formatDuration(job.durationMs)}</span>
            <CacheBar cached={job.stepsCached} ran={job.stepsRan} />
          </div>
          {waiting.length > 0 && (
            <div className="waiting-buttons" data-testid="waiting-buttons">
              {waiting.map(({ runner: owner, button }) => (
                <div key={button.id} className="button-box waiting">
                  <span className="button-icon">⏸</span>
                  <div>
                    <div className="button-message">{button.message}</div>
                    <div className="muted small">
                      {owner} waits at line {button.line} for approval
                    </div>
                  </div>
                  <span className="spacer" />
                  <button className="btn btn-primary" disabled={busy} onClick={() => act(`${base}/buttons/${encodeURIComponent(button.id)}/approve`)}>
                    Approve
                  </button>
                </div>
              ))}
            </div>
          )}
          {state.notes.length > 0 && (
            <ul className="notes" data-testid="notes">
              {state.notes.map((note, i) => (
                <li key={i}>
                  <span className="muted">{new Date(note.timeMs).toLocaleTimeString()}</span> {note.message}
                </li>
              ))}
            </ul>
          )}
          {job.message && <div className={`alert ${job.status === 'SUCCESS' ? 'alert-info' : 'alert-error'}`}>{job.message}</div>}
        </div>
        <div className="job-actions">
          {!finished && (
            <button className="btn btn-danger" disabled={busy} onClick={() => act(`${base}/cancel`)}>
              Cancel
            </button>
          )}
          <button className="btn" disabled={busy || !finished} onClick={() => act(`${base}/retry`, {}, true)}>
            Retry
          </button>
          <button className="btn" disabled={busy || !finished} onClick={() => act(`${base}/retry`, { noCache: true }, true)}>
            Retry without cache
          </button>
          <button className="btn" disabled={busy || !finished} title="run with empty, throwaway CACHE directories" onClick={() => act(`${base}/retry`, { noCacheDirs: true }, true)}>
            Retry without CACHE dirs
          </button>
        </div>
      </section>

      <RunnerDag runners={job.runners} selected={selected} onSelect={(r) => setSelected(r)} />

      {runner && (
        <div className="runner-detail">
          <section className="card">
            <div className="card-head">
              <h2>
                {runner.runner} <span className="muted small">{runner.layerfile}</span>
              </h2>
              <StatusBadge status={runner.status} />
              <span className="muted">{formatDuration(runner.durationMs)}</span>
              <span className="spacer" />
              {runner.debuggable && (
                <button className="btn btn-dark btn-sm" onClick={() => setTerminalFor(runner.runner)}>
                  &gt;_ Open debug terminal
                </button>
              )}
            </div>
            {runner.message && <div className="alert alert-error inset">{runner.message}</div>}
            {runner.buttons
              .filter((button) => button.state === 'approved')
              .map((button) => (
                <div key={button.id} className="button-box approved" data-button={button.id}>
                  <span className="button-icon">✓</span>
                  <div>
                    <div className="button-message">{button.message}</div>
                    <div className="muted small">BUTTON at line {button.line} · approved</div>
                  </div>
                </div>
              ))}
            {runner.previews.length > 0 && (
              <div className="previews">
                <span className="muted small">Previews</span>
                {runner.previews.map((preview) => (
                  <a key={preview.url} className="preview-link" href={preview.url} target="_blank" rel="noreferrer">
                    ↗ {preview.url.replace(/^https?:\/\/[^/]+/, '')} <span className="muted small">→ {preview.target}</span>
                  </a>
                ))}
              </div>
            )}
            <StepList steps={runner.steps} />
          </section>
          {terminalFor === runner.runner && (
            <Suspense fallback={<div className="terminal-panel muted pad">Loading terminal…</div>}>
              <DebugTerminal jobId={job.id} runner={runner.runner} onClose={() => setTerminalFor(null)} />
            </Suspense>
          )}
          <section className="card log-card">
            <LogView key={runner.runner} chunks={state.logs[runner.runner] ?? []} steps={runner.steps} live={!finished} />
          </section>
        </div>
      )}
    </div>
  );
}
