// The server's job queue and trigger bookkeeping (src/server/jobs, src/server/triggers), as one
// of the frozen raw SQLite migrations (legacy.ts).

export const JOB_TABLES_MIGRATION = `
  -- A job: one run of one commit of a server repository. Claimed by a worker with a lease
  -- (lease_until, renewed while it runs); a RUNNING job whose lease expired belongs to a worker that died.
  CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    repo TEXT NOT NULL,
    branch TEXT NOT NULL,
    commit_id TEXT NOT NULL,
    title TEXT NOT NULL,
    author TEXT NOT NULL,
    trigger TEXT NOT NULL,
    status TEXT NOT NULL,
    no_cache INTEGER NOT NULL DEFAULT 0,
    no_cache_dirs INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    duration_ms INTEGER,
    steps_ran INTEGER NOT NULL DEFAULT 0,
    steps_cached INTEGER NOT NULL DEFAULT 0,
    run_id TEXT,
    message TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_until INTEGER
  );
  CREATE INDEX jobs_by_status ON jobs (status, created_at);
  CREATE INDEX jobs_by_repo ON jobs (repo, created_at);

  -- The runners of a job's run; detail is the RunnerDetail JSON of the API (steps, buttons, previews).
  CREATE TABLE job_runners (
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    runner TEXT NOT NULL,
    position INTEGER NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (job_id, runner)
  );

  -- Webhook delivery ids already accepted: a replayed delivery is refused.
  CREATE TABLE webhook_deliveries (
    delivery_id TEXT PRIMARY KEY,
    repo TEXT NOT NULL,
    received_at INTEGER NOT NULL
  );

  -- The branch heads the poller saw last, per repository.
  CREATE TABLE poll_heads (
    repo TEXT NOT NULL,
    branch TEXT NOT NULL,
    commit_id TEXT NOT NULL,
    PRIMARY KEY (repo, branch)
  );
`;
