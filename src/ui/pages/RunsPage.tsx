// The runs list: filters (search, repo, status) sent to GET /api/jobs, refreshed every 2 s, with the
// duration chart above it.
import { useEffect, useState } from 'react';
import type { DurationPoint, JobStatus, JobSummary, Repo } from '../../server/api/types.js';
import { api, errorText, query } from '../api.js';
import { DurationChart } from '../components/DurationChart.js';
import { CacheBar, StatusBadge } from '../components/StatusBadge.js';
import { formatAgo, formatDuration, JOB_STATUS_LABEL, shortCommit } from '../format.js';
import { Link, navigate } from '../router.js';
import { usePolling } from '../usePolling.js';

const STATUSES = Object.keys(JOB_STATUS_LABEL) as JobStatus[];

export function RunsPage() {
  const [q, setQ] = useState('');
  const [repo, setRepo] = useState('');
  const [status, setStatus] = useState('');
  const [repos, setRepos] = useState<Repo[]>([]);

  useEffect(() => {
    api<{ repos: Repo[] }>('GET', '/api/repos').then(({ repos }) => setRepos(repos), () => {});
  }, []);

  const jobs = usePolling(() => api<{ jobs: JobSummary[] }>('GET', `/api/jobs${query({ q, repo, status, limit: 100 })}`).then((r) => r.jobs), 2000, [q, repo, status]);
  const points = usePolling(() => api<{ points: DurationPoint[] }>('GET', `/api/stats/durations${query({ repo, limit: 40 })}`).then((r) => r.points), 5000, [repo]);

  return (
    <div className="page">
      <div className="page-head">
        <h1>Runs</h1>
        <span className="muted">{repo ? repo : 'all repositories'}</span>
      </div>

      <section className="card">
        <div className="card-head">
          <h2>Duration per commit</h2>
          <span className="muted small">bars: run duration · line: share of steps restored from the cache</span>
        </div>
        <div className="pad">{points.value ? <DurationChart points={points.value} /> : <div className="chart-empty muted">Loading…</div>}</div>
      </section>

      <section className="card">
        <div className="filters">
          <input className="input" type="search" placeholder="Search branch, commit, title, author" value={q} onChange={(e) => setQ(e.target.value)} aria-label="Search runs" />
          <select className="input" value={repo} onChange={(e) => setRepo(e.target.value)} aria-label="Repository">
            <option value="">All repositories</option>
            {repos.map((r) => (
              <option key={r.name} value={r.name}>
                {r.name}
              </option>
            ))}
          </select>
          <select className="input" value={status} onChange={(e) => setStatus(e.target.value)} aria-label="Status">
            <option value="">Any status</option>
            {STATUSES.map((s) => (
              <option key={s} value={s}>
                {JOB_STATUS_LABEL[s]}
              </option>
            ))}
          </select>
        </div>
        {jobs.error ? <div className="alert alert-error">{errorText(jobs.error)}</div> : null}
        <table className="table runs-table" data-testid="runs">
          <thead>
            <tr>
              <th>Status</th>
              <th>Commit</th>
              <th>Repository · branch</th>
              <th>Trigger</th>
              <th>Duration</th>
              <th>Cache</th>
            </tr>
          </thead>
          <tbody>
            {jobs.value?.map((job) => (
              <tr key={job.id} className="clickable" onClick={() => navigate(`/jobs/${job.id}`)} data-job={job.id}>
                <td>
                  <StatusBadge status={job.status} />
                </td>
                <td className="cell-commit">
                  <Link href={`/jobs/${job.id}`} className="commit-title" onClick={(e) => e.stopPropagation()}>
                    {job.title || '(no title)'}
                  </Link>
                  <div className="muted small">
                    <code>{shortCommit(job.commit)}</code> · {job.author} · {formatAgo(job.createdAt)}
                  </div>
                </td>
                <td>
                  <div>{job.repo}</div>
                  <div className="branch">{job.branch}</div>
                </td>
                <td>
                  <span className="chip">{job.trigger}</span>
                  {job.options.noCache && <span className="chip chip-warn">no cache</span>}
                </td>
                <td className="num">{formatDuration(job.durationMs ?? (job.startedAt && !job.finishedAt ? Date.now() - job.startedAt : null))}</td>
                <td>
                  <CacheBar cached={job.stepsCached} ran={job.stepsRan} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        {jobs.value?.length === 0 && (
          <div className="empty">
            {q || repo || status ? 'No runs match these filters.' : <>No runs yet. <Link href="/repos">Add a repository</Link>, then push to it.</>}
          </div>
        )}
      </section>
    </div>
  );
}
