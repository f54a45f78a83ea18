// The server's tables (users, sessions, API tokens, repositories and their secrets) as one of the frozen
// raw SQLite migrations (legacy.ts). Credentials are stored only as hashes; secret values and webhook
// secrets only encrypted with the server key (src/server/repos/serverKey.ts).
export const SERVER_TABLES_MIGRATION = `
  CREATE TABLE server_users (
    name TEXT PRIMARY KEY,
    -- scrypt$<N>$<r>$<p>$<salt base64>$<hash base64>
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL
  );

  -- A session's id lives only in the user's cookie; the table holds its sha256.
  CREATE TABLE server_sessions (
    id_hash TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES server_users (name) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
  );
  CREATE INDEX server_sessions_by_expiry ON server_sessions (expires_at);

  CREATE TABLE server_api_tokens (
    token_hash TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES server_users (name) ON DELETE CASCADE,
    created_at INTEGER NOT NULL
  );

  CREATE TABLE server_repos (
    name TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    default_branch TEXT NOT NULL,
    poll_seconds INTEGER,
    public_previews INTEGER NOT NULL DEFAULT 0,
    webhook_secret_encrypted TEXT NOT NULL,
    created_at INTEGER NOT NULL
  );

  CREATE TABLE server_repo_secrets (
    repo TEXT NOT NULL REFERENCES server_repos (name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value_encrypted TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (repo, name)
  );
`;
