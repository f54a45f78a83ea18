// Who is behind a request: the session cookie (browsers) or `Authorization: Bearer <token>` (scripts).
import type { FastifyRequest } from 'fastify';
import type {} from '@fastify/cookie'; // request.cookies
import type { ServerUser } from '../context.js';
import type { UserStore } from './users.js';

export const SESSION_COOKIE = 'strata_session';

/** The token of an `Authorization: Bearer <token>` header; undefined when there is none or it is malformed. */
export function bearerToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  return header === undefined ? undefined : /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1];
}

export function createAuthenticator(users: UserStore): (request: FastifyRequest) => Promise<ServerUser | null> {
  return async (request) => {
    if (request.headers.authorization !== undefined) {
      // A malformed or wrong Authorization header is a failure even with a valid cookie: never guess.
      const token = bearerToken(request);
      return token ? users.userForToken(token) : null;
    }
    const session = request.cookies?.[SESSION_COOKIE];
    return session ? users.userForSession(session) : null;
  };
}
