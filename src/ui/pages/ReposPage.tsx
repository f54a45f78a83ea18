// Repositories: the list (with a manual trigger), adding one (its webhook URL and secret are shown once),
// and each repository's secrets (names only; values are write-only).
import { useEffect, useState, type FormEvent } from 'react';
import type { JobSummary, Repo } from '../../server/api/types.js';
import { api, errorText } from '../api.js';
import { formatAgo } from '../format.js';
import { navigate } from '../router.js';

export function ReposPage() {
  const [repos, setRepos] = useState<Repo[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [created, setCreated] = useState<{ repo: Repo; webhookSecret: string } | null>(null);
  const [secretsFor, setSecretsFor] = useState<string | null>(null);

  const load = () => api<{ repos: Repo[] }>('GET', '/api/repos').then(({ repos }) => setRepos(repos), (e: unknown) => setError(errorText(e)));
  useEffect(() => void load(), []);

  const trigger = async (repo: Repo) => {
    try {
      const { job } = await api<{ job: JobSummary }>('POST', `/api/repos/${encodeURIComponent(repo.name)}/trigger`, {});
      navigate(`/jobs/${job.id}`);
    } catch (caught) {
      setError(errorText(caught));
    }
  };

  return (
    <div className="page">
      <div className="page-head">
        <h1>Repositories</h1>
      </div>
      {error && <div className="alert alert-error">{error}</div>}
      {created && (
        <section className="card callout" data-testid="webhook-once">
          <div className="card-head">
            <h2>Repository “{created.repo.name}” added</h2>
            <span className="spacer" />
            <button className="btn btn-sm btn-ghost" onClick={() => setCreated(null)}>
              Dismiss
            </button>
          </div>
          <div className="pad">
            <p>Point your forge's push webhook here. The secret is shown only this once.</p>
            <dl className="kv">
              <dt>Webhook URL</dt>
              <dd>
                <code data-testid="webhook-url">{`${location.origin}/api/webhooks/${encodeURIComponent(created.repo.name)}`}</code>
              </dd>
              <dt>Secret</dt>
              <dd>
                <code data-testid="webhook-secret">{created.webhookSecret}</code>
              </dd>
              <dt>Content type</dt>
              <dd>application/json · events: push, pull_request</dd>
            </dl>
          </div>
        </section>
      )}
      <div className="two-col">
        <section className="card">
          <div className="card-head">
            <h2>All repositories</h2>
          </div>
          <table className="table" data-testid="repos">
            <thead>
              <tr>
                <th>Name</th>
                <th>Source</th>
                <th>Branch</th>
                <th>Polling</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {repos?.map((repo) => (
                <tr key={repo.name} data-repo={repo.name}>
                  <td>
                    <b>{repo.name}</b>
                    <div className="muted small">added {formatAgo(repo.createdAt)}</div>
                  </td>
                  <td>
                    <code className="wrap">{repo.url}</code>
                  </td>
                  <td className="branch">{repo.defaultBranch}</td>
                  <td className="nowrap">{repo.pollSeconds ? `every ${repo.pollSeconds} s` : <span className="muted">webhook</span>}</td>
                  <td>
                    <div className="row-actions">
                    <button className="btn btn-sm" onClick={() => trigger(repo)}>
                      Run now
                    </button>
                    <button className="btn btn-sm btn-ghost" onClick={() => setSecretsFor(repo.name)}>
                      Secrets
                    </button>
                    </div>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          {repos?.length === 0 && <div className="empty">No repositories yet: add one.</div>}
        </section>
        <AddRepoForm
          onAdded={(result) => {
            setCreated(result);
            void load();
          }}
        />
      </div>
      {secretsFor && <SecretsCard repo={secretsFor} onClose={() => setSecretsFor(null)} />}
    </div>
  );
}

function AddRepoForm({ onAdded }: { onAdded: (result: { repo: Repo; webhookSecret: string }) => void }) {
  const [name, setName] = useState('');
  const [url, setUrl] = useState('');
  const [branch, setBranch] = useState('main');
  const [poll, setPoll] = useState('');
  const [error, setError] = useState<string | null>(null);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setError(null);
    try {
      const pollSeconds = poll.trim() ? Number(poll) : null;
      const result = await api<{ repo: Repo; webhookSecret: string }>('POST', '/api/repos', { name, url, defaultBranch: branch || undefined, pollSeconds });
      setName('');
      setUrl('');
      setPoll('');
      onAdded(result);
    } catch (caught) {
      setError(errorText(caught));
    }
  };

  return (
    <form className="card form-card" onSubmit={submit} data-testid="add-repo">
      <div className="card-head">
        <h2>Add a repository</h2>
      </div>
      <div className="pad form-grid">
        <label className="field">
          <span>Name</span>
          <input className="input" name="name" value={name} onChange={(e) => setName(e.target.value)} placeholder="web-app" required />
        </label>
        <label className="field">
          <span>Git URL or local path</span>
          <input className="input" name="url" value={url} onChange={(e) => setUrl(e.target.value)} placeholder="https://git.example.com/team/web-app.git" required />
        </label>
        <label className="field">
          <span>Default branch</span>
          <input className="input" name="branch" value={branch} onChange={(e) => setBranch(e.target.value)} />
        </label>
        <label className="field">
          <span>Poll every (seconds)</span>
          <input className="input" name="poll" type="number" min="5" value={poll} onChange={(e) => setPoll(e.target.value)} placeholder="off: webhooks only" />
        </label>
        {error && <div className="alert alert-error">{error}</div>}
        <button className="btn btn-primary" type="submit">
          Add repository
        </button>
      </div>
    </form>
  );
}

function SecretsCard({ repo, onClose }: { repo: string; onClose: () => void }) {
  const [names, setNames] = useState<string[] | null>(null);
  const [name, setName] = useState('');
  const [value, setValue] = useState('');
  const [error, setError] = useState<string | null>(null);
  const base = `/api/repos/${encodeURIComponent(repo)}/secrets`;

  useEffect(() => {
    setNames(null);
    api<{ names: string[] }>('GET', base).then(({ names }) => setNames(names), (e: unknown) => setError(errorText(e)));
  }, [base]);

  const change = async (method: 'PUT' | 'DELETE', secret: string, body?: unknown) => {
    setError(null);
    try {
      const result = await api<{ names: string[] }>(method, `${base}/${encodeURIComponent(secret)}`, body);
      setNames(result.names);
      return true;
    } catch (caught) {
      setError(errorText(caught));
      return false;
    }
  };

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (await change('PUT', name, { value })) {
      setName('');
      setValue('');
    }
  };

  return (
    <section className="card" data-testid="secrets">
      <div className="card-head">
        <h2>
          Secrets of <code>{repo}</code>
        </h2>
        <span className="muted small">used by SECRET ENV; values are never shown again</span>
        <span className="spacer" />
        <button className="btn btn-sm btn-ghost" onClick={onClose}>
          Close
        </button>
      </div>
      {error && <div className="alert alert-error inset">{error}</div>}
      <ul className="secret-list">
        {names?.map((secret) => (
          <li key={secret}>
            <code>{secret}</code>
            <span className="muted">••••••••</span>
            <span className="spacer" />
            <button className="btn btn-sm btn-ghost danger-text" onClick={() => void change('DELETE', secret)}>
              Delete
            </button>
          </li>
        ))}
        {names?.length === 0 && <li className="muted">No secrets.</li>}
      </ul>
      <form className="secret-form" onSubmit={submit}>
        <input className="input" placeholder="NAME" value={name} onChange={(e) => setName(e.target.value)} pattern="[A-Za-z_][A-Za-z0-9_]*" required aria-label="Secret name" />
        <input className="input" type="password" placeholder="value" value={value} onChange={(e) => setValue(e.target.value)} required aria-label="Secret value" />
        <button className="btn" type="submit">
          Set secret
        </button>
      </form>
    </section>
  );
}
