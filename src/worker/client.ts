// How a `strata worker` talks to its server: JSON over HTTP with the worker's bearer token. An error
// answer becomes the StrataError the server raised (same code, message, hint); a server that cannot be
// reached becomes STRATA_SERVER_UNREACHABLE. Calls that may be repeated safely (`retryForMs`) are tried
// again while the failure is transient: the server unreachable (restarting) or answering 5xx (its
// database restarting), with growing pauses, for up to that long.
import { StrataError, type StrataErrorCode } from '../errors.js';
import { sleep } from '../util/sleep.js';

export interface WorkerClient {
  readonly server: string;
  /**
   * POSTs `body` as JSON to `path` (e.g. /api/worker/heartbeat); the answer's JSON (null: 204).
   * `retryForMs`: keep trying a transient failure this long (only for calls safe to repeat).
   */
  post<T>(path: string, body: unknown, options?: { retryForMs?: number }): Promise<T>;
}

/** A failure worth trying again: the server out of reach, or failing inside (its database restarting). */
export function isTransient(error: unknown): boolean {
  return error instanceof StrataError && (error.code === 'STRATA_SERVER_UNREACHABLE' || error.code === 'STRATA_INTERNAL');
}

export function createWorkerClient(options: { server: string; token: string; fetch?: typeof fetch }): WorkerClient {
  const server = options.server.replace(/\/+$/, '');
  const send = options.fetch ?? fetch;

  const once = async <T>(path: string, body: unknown): Promise<T> => {
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
    const parsed = parseJson(await response.text());
    if (!response.ok) {
      const error = (parsed as { error?: { code?: string; message?: string; hint?: string } } | undefined)?.error;
      const code = (error?.code as StrataErrorCode | undefined) ?? (response.status >= 500 ? 'STRATA_INTERNAL' : 'STRATA_SERVER_UNREACHABLE');
      throw new StrataError(code, error?.message ?? `the server answered ${response.status} to ${path}`, error?.hint ? { hint: error.hint } : {});
    }
    return parsed as T;
  };

  return {
    server,
    async post<T>(path: string, body: unknown, retry: { retryForMs?: number } = {}): Promise<T> {
      const deadline = Date.now() + (retry.retryForMs ?? 0);
      for (let pause = 200; ; pause = Math.min(pause * 2, 5000)) {
        try {
          return await once<T>(path, body);
        } catch (error) {
          if (!isTransient(error) || Date.now() + pause > deadline) throw error;
          await sleep(pause);
        }
      }
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
