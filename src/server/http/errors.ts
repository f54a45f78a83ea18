// The one place errors become HTTP answers: `{error: {code, message, hint?}}` with the status the
// StrataError code stands for. Errors that are not StrataErrors are bugs: logged, answered 500 without
// their message (it may name internal paths).
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isStrataError, type StrataErrorCode } from '../../errors.js';
import type { ApiError } from '../api/types.js';

const STATUS: Partial<Record<StrataErrorCode, number>> = {
  STRATA_USAGE: 400,
  STRATA_LAYERFILE_SYNTAX: 400,
  STRATA_LAYERFILE_GRAPH: 400,
  STRATA_SECRET: 400,
  STRATA_UNAUTHORIZED: 401,
  STRATA_FORBIDDEN: 403,
  STRATA_NOT_FOUND: 404,
  STRATA_CONFLICT: 409,
  STRATA_GONE: 410,
  STRATA_TOO_MANY_ATTEMPTS: 429,
};

export function httpStatusFor(code: StrataErrorCode): number {
  return STATUS[code] ?? 500;
}

export function apiError(code: string, message: string, hint?: string): ApiError {
  return { error: { code, message, ...(hint !== undefined ? { hint } : {}) } };
}

export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    if (isStrataError(error)) {
      const status = httpStatusFor(error.code);
      if (status >= 500) request.log.error({ err: error }, 'request failed');
      return reply.status(status).send(apiError(error.code, error.message, error.hint));
    }
    // Fastify's own client errors (malformed JSON, body too large, bad content type) keep their status.
    if (typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500) {
      return reply.status(error.statusCode).send(apiError('STRATA_USAGE', error.message));
    }
    request.log.error({ err: error }, 'request failed');
    return reply.status(500).send(apiError('STRATA_INTERNAL', 'internal server error', 'the server log has the details'));
  });
}
