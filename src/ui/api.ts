// The browser side of docs/server-api.md: typed fetch helpers. Auth is the `strata_session` cookie, which
// the browser sends by itself; a 401 anywhere sends the app back to the login page.
import type { ApiError as ApiErrorBody } from '../server/api/types.js';

/** The signed-in user (`GET /api/me`, `POST /api/login`). */
export interface User {
  name: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

type UnauthorizedListener = () => void;
const unauthorizedListeners = new Set<UnauthorizedListener>();
/** Called on every 401 answer (except the login call itself). */
export function onUnauthorized(listener: UnauthorizedListener): () => void {
  unauthorizedListeners.add(listener);
  return () => unauthorizedListeners.delete(listener);
}

export async function api<T>(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown): Promise<T> {
  const response = await fetch(path, {
    method,
    credentials: 'same-origin',
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? null : JSON.stringify(body),
  });
  const text = await response.text();
  const parsed: unknown = text ? safeJson(text) : {};
  if (!response.ok) {
    const error = (parsed as Partial<ApiErrorBody>)?.error;
    if (response.status === 401 && path !== '/api/login') for (const listener of unauthorizedListeners) listener();
    throw new ApiError(response.status, error?.code ?? `HTTP_${response.status}`, error?.message ?? response.statusText, error?.hint);
  }
  return parsed as T;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return { error: { code: 'BAD_RESPONSE', message: text.slice(0, 200) } };
  }
}

/** A query string from the defined, non-empty values. */
export function query(params: Record<string, string | number | undefined | null>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value !== undefined && value !== null && value !== '') search.set(key, String(value));
  const text = search.toString();
  return text ? `?${text}` : '';
}

export const errorText = (error: unknown): string =>
  error instanceof ApiError ? `${error.message}${error.hint ? ` — ${error.hint}` : ''}` : error instanceof Error ? error.message : String(error);
