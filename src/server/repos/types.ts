// Repositories the server builds, and their secrets (encrypted at rest with the server key).
import type { Secrets } from '../../engine/secrets.js';
import type { Repo } from '../api/types.js';

export interface NewRepo {
  name: string;
  url: string;
  defaultBranch?: string | undefined;
  pollSeconds?: number | null | undefined;
  publicPreviews?: boolean | undefined;
  /** Given, or generated (and returned once by add()). */
  webhookSecret?: string | undefined;
}

export interface RepoStore {
  add(repo: NewRepo): Promise<{ repo: Repo; webhookSecret: string }>;
  list(): Promise<Repo[]>;
  get(name: string): Promise<Repo | null>;
  /** The webhook secret, for verifying signatures. */
  webhookSecret(name: string): Promise<string | null>;
  setSecret(repo: string, name: string, value: string): Promise<string[]>;
  deleteSecret(repo: string, name: string): Promise<string[]>;
  secretNames(repo: string): Promise<string[]>;
  /** Decrypted values, for a job's run (SECRET ENV). */
  secretsFor(repo: string): Promise<Secrets>;
}
