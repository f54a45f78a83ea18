// POST /api/login, POST /api/logout, GET /api/me.
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { StrataError } from '../../errors.js';
import { SESSION_COOKIE } from '../auth/authenticate.js';
import type { CredentialLimiter } from '../auth/rateLimit.js';
import type { UserStore } from '../auth/users.js';
import type { ServerContext } from '../context.js';
import { parseInput } from './validate.js';

const LoginBody = z.object({ username: z.string().min(1).max(200), password: z.string().min(1).max(1000) });

export async function authRoutes(app: FastifyInstance, options: { ctx: ServerContext; users: UserStore; limitCredentials: CredentialLimiter }): Promise<void> {
  const { ctx, users, limitCredentials } = options;
  // Browsers send the cookie only over https when the server is reached over https.
  const secure = ctx.config.publicUrl.startsWith('https://');

  app.post('/api/login', async (request, reply) => {
    await limitCredentials(request, reply); // every attempt counts: a password is guessed by trying
    const body = parseInput(LoginBody, request.body, 'body');
    const user = await users.verifyLogin(body.username, body.password);
    if (!user) throw new StrataError('STRATA_UNAUTHORIZED', 'wrong user name or password');
    const session = await users.createSession(user.name);
    reply.setCookie(SESSION_COOKIE, session.id, { path: '/', httpOnly: true, sameSite: 'lax', secure, expires: new Date(session.expiresAt) });
    return { user };
  });

  app.post('/api/logout', async (request, reply) => {
    const session = request.cookies[SESSION_COOKIE];
    if (session) await users.endSession(session);
    reply.clearCookie(SESSION_COOKIE, { path: '/' });
    return {};
  });

  app.get('/api/me', async (request) => ({ user: request.user }));
}
