// Guessing credentials against a server many hosts reach: every login attempt and every request whose
// `Authorization` header names no valid token counts against its client address, and past the limit the
// address is answered 429 (with Retry-After) until the window has passed. @fastify/rate-limit keeps the
// counts (in memory, per server process).
import fastifyRateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { StrataError } from '../../errors.js';

/** Credential attempts one client address may make per window. */
export const CREDENTIAL_ATTEMPTS = 10;
export const CREDENTIAL_WINDOW_MS = 60_000;

export type CredentialLimiter = (request: FastifyRequest, reply: FastifyReply) => Promise<void>;

/** Registers the plugin (no global limit) and returns the credential attempts' limiter. */
export async function credentialLimiter(app: FastifyInstance): Promise<CredentialLimiter> {
  await app.register(fastifyRateLimit, { global: false });
  const limit = app.rateLimit({
    max: CREDENTIAL_ATTEMPTS,
    timeWindow: CREDENTIAL_WINDOW_MS,
    keyGenerator: (request) => `credentials:${request.ip}`,
    errorResponseBuilder: (_request, context) =>
      new StrataError('STRATA_TOO_MANY_ATTEMPTS', `too many login or token attempts from this address (${context.max} a minute)`, {
        hint: `try again in ${Math.ceil(context.ttl / 1000)} s`,
      }),
  });
  return async (request, reply) => {
    await limit.call(app, request, reply);
  };
}
