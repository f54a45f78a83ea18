// Who is behind a request: the session cookie (browsers) or `Authorization: Bearer <token>` (scripts).
import type { FastifyRequest } from 'fastify';
import type {} from '@fastify/cookie'; // request.cookies
import type { ServerUser } from '../context.js';
import type { UserStore } from './users.js';

export const SESSION_COOKIE = 'strata_session';

export function createAuthenticator(users: UserStore): (request: FastifyRequest) => Promise<ServerUser | null> {
  return async (request) => {
    const header = request.headers.authorization;
    if (header !== undefined) {
      const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
      // A malformed or wrong Authorization header is a failure even with a valid cookie: never guess.
      return match?.[1] ? users.userForToken(match[1]) : null;
    }
    const session = request.cookies?.[SESSION_COOKIE];
    return session ? users.userForSession(session) : null;
  };
}
