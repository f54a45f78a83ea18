// `strata trigger <repo> [--branch B] [--commit C]`: asks a running server to build (POST .../trigger).
import { StrataError } from '../../errors.js';
import type { ApiError, JobSummary } from '../../server/api/types.js';
import { DEFAULT_LISTEN } from './serve.js';

export interface TriggerOptions {
  branch?: string;
  commit?: string;
  server?: string;
  token?: string;
}

export async function triggerCommand(repo: string, options: TriggerOptions, out: NodeJS.WritableStream = process.stdout, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const server = (options.server ?? env.STRATA_SERVER ?? `http://${DEFAULT_LISTEN}`).replace(/\/+$/, '');
  const token = options.token ?? env.STRATA_TOKEN;
  if (!token) throw new StrataError('STRATA_USAGE', 'no API token', { hint: 'give --token or $STRATA_TOKEN (`strata user token <name>` makes one)' });
  let response: Response;
  try {
    response = await fetch(`${server}/api/repos/${encodeURIComponent(repo)}/trigger`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ...(options.branch ? { branch: options.branch } : {}), ...(options.commit ? { commit: options.commit } : {}) }),
    });
  } catch (cause) {
    throw new StrataError('STRATA_USAGE', `cannot reach the server at ${server}`, { cause, hint: 'is `strata serve` running? give its address with --server or $STRATA_SERVER' });
  }
  const answer = (await response.json().catch(() => null)) as ({ job: JobSummary } & Partial<ApiError>) | null;
  if (!response.ok || !answer?.job) {
    throw new StrataError(response.status < 500 ? 'STRATA_USAGE' : 'STRATA_INTERNAL', `the server answered ${response.status}: ${answer?.error?.message ?? response.statusText}`, { hint: answer?.error?.hint });
  }
  out.write(`${answer.job.id}\t${answer.job.status}\t${server}/jobs/${answer.job.id}\n`);
  return 0;
}
