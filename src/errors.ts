// One error base for the whole engine: a stable string `code`, a `hint` for the user and the
// original `cause`. The CLI maps codes to exit codes; the server maps them to HTTP statuses.

export type StrataErrorCode =
  | 'STRATA_LAYERFILE_SYNTAX'
  | 'STRATA_LAYERFILE_GRAPH'
  | 'STRATA_USAGE'
  | 'STRATA_IMAGE'
  | 'STRATA_SNAPSHOT'
  /** The snapshot store's disk is full: a step (or a CACHE dir) filled it; the run fails, the store stays usable. */
  | 'STRATA_STORE_FULL'
  | 'STRATA_SANDBOX_START'
  | 'STRATA_SANDBOX_EXEC'
  | 'STRATA_TRACE'
  | 'STRATA_STORE'
  | 'STRATA_ENGINE'
  | 'STRATA_CANCELLED'
  | 'STRATA_SECRET'
  | 'STRATA_INSTALL'
  | 'STRATA_INTERNAL'
  | 'STRATA_UNAUTHORIZED' | 'STRATA_FORBIDDEN' | 'STRATA_NOT_FOUND' | 'STRATA_CONFLICT' | 'STRATA_GONE'
  /** Too many credential attempts from one client address (the server's rate limit): try again later. */
  | 'STRATA_TOO_MANY_ATTEMPTS'
  /** A `strata worker` cannot reach its server. */
  | 'STRATA_SERVER_UNREACHABLE';

export interface StrataErrorOptions {
  hint?: string | undefined;
  cause?: unknown;
}

export class StrataError extends Error {
  readonly code: StrataErrorCode;
  readonly hint: string | undefined;

  constructor(code: StrataErrorCode, message: string, options: StrataErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'StrataError';
    this.code = code;
    this.hint = options.hint;
  }
}

export function isStrataError(value: unknown): value is StrataError {
  return value instanceof StrataError;
}
