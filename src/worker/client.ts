// How a `strata worker` talks to its server: JSON over HTTP with the worker's bearer token. An error
// answer becomes the StrataError the server raised (same code, message, hint); a server that cannot be
// reached becomes STRATA_SERVER_UNREACHABLE.
import { StrataError, type StrataErrorCode } from '../errors.js';

export interface WorkerClient {
  readonly server: string;
  /** POSTs `body` as JSON to `path` (e.g. /api/worker/heartbeat); the answer's JSON (null: 204). */
  post<T>(path: string, body: unknown): Promise<T>;
}

export function createWorkerClient(options: { server: string; token: string; fetch?: typeof fetch }): WorkerClient {
  const server = options.server.replace(/\/+$/, '');
  const send = options.fetch ?? fetch;
  return {
    server,
    async post<T>(path: string, body: unknown): Promise<T> {
      let response: Response;
      try {
        response = await send(`${server}${path}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${options.token}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
      } catch (cause) {
        throw new StrataError('STRATA_SERVER_UNREACHABLE', `cannot reach the strata server at ${server}`, { cause, hint: 'is `strata serve` running there, and reachable from this host?' });
      }
      if (response.status === 204) return null as T;
      const text = await response.text();
      const parsed = parseJson(text);
      if (!response.ok) {
        const error = (parsed as { error?: { code?: string; message?: string; hint?: string } } | undefined)?.error;
        throw new StrataError((error?.code as StrataErrorCode | undefined) ?? 'STRATA_SERVER_UNREACHABLE', error?.message ?? `the server answered ${response.status} to ${path}`, error?.hint ? { hint: error.hint } : {});
      }
      return parsed as T;
    },
  };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
