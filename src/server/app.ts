// The HTTP app: Fastify with its JSON logger, cookies, websockets, the auth hook, one error handler,
// the API route plugins (ours and the jobs/triggers/previews/terminal ones) and the web UI (dist/ui/,
// with the single-page app's fallback to index.html).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fastifyCookie from '@fastify/cookie';
import fastifyStatic from '@fastify/static';
import fastifyWebsocket from '@fastify/websocket';
import Fastify, { type FastifyInstance, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import { StrataError } from '../errors.js';
import type { EngineDeps } from '../engine/ports.js';
import type { StoreDatabase } from '../store/database.js';
import { bearerToken, createAuthenticator } from './auth/authenticate.js';
import type { UserStore } from './auth/users.js';
import type { ServerConfig, ServerContext } from './context.js';
import { credentialLimiter } from './auth/rateLimit.js';
import { authRoutes } from './http/authRoutes.js';
import { apiError, installErrorHandler } from './http/errors.js';
import { jobRoutes } from './http/jobRoutes.js';
import { repoRoutes } from './http/repoRoutes.js';
import type { JobService } from './jobs/types.js';
import { previewRoutes } from './previews/routes.js';
import { terminalRoutes } from './terminal/routes.js';
import { webhookRoutes } from './triggers/webhooks.js';
import { workerRoutes } from './workers/routes.js';
import type { RepoStore } from './repos/types.js';
import { WORKER_TOKEN_PREFIX, type WorkerStore } from './workers/store.js';

/** Where `npm run build` puts the web UI: dist/ui/ of the package (from src/server/ or dist/server/). */
export const DEFAULT_UI_DIR = fileURLToPath(new URL('../../dist/ui/', import.meta.url));

export interface CreateServerOptions {
  config: ServerConfig;
  db: StoreDatabase;
  engine: EngineDeps;
  users: UserStore;
  repos: RepoStore;
  workers: WorkerStore;
  /** The job service, or a factory given the rest of the context (its logger is the server's). */
  jobs: JobService | ((ctx: Omit<ServerContext, 'jobs'>) => JobService);
  /** Fastify's pino logger options; default JSON lines at level info. Tests pass false. */
  logger?: FastifyServerOptions['logger'];
  /** The built web UI; default DEFAULT_UI_DIR. */
  uiDir?: string;
  /** How often an idle event stream gets a heartbeat comment; default 15 s. */
  sseHeartbeatMs?: number;
}

export interface StrataServer {
  app: FastifyInstance;
  ctx: ServerContext;
}

export async function createServer(options: CreateServerOptions): Promise<StrataServer> {
  const app = Fastify({ logger: options.logger ?? { level: 'info' }, trustProxy: false });
  const base: Omit<ServerContext, 'jobs'> = {
    config: options.config,
    db: options.db,
    engine: options.engine,
    authenticate: createAuthenticator(options.users),
    repos: options.repos,
    workers: options.workers,
    log: app.log,
  };
  const ctx: ServerContext = { ...base, jobs: typeof options.jobs === 'function' ? options.jobs(base) : options.jobs };

  installErrorHandler(app);
  await app.register(fastifyCookie);
  await app.register(fastifyWebsocket);

  // Every request learns its user; /api needs one, except logging in and webhooks (signed instead).
  app.decorateRequest('user', null);
  app.decorateRequest('worker', null);
  const limitCredentials = await credentialLimiter(app);
  app.addHook('onRequest', async (request, reply) => {
    // A worker's token opens the worker API and nothing else; a user's never opens the worker API.
    const bearer = bearerToken(request);
    request.worker = bearer?.startsWith(WORKER_TOKEN_PREFIX) ? await ctx.workers.workerForToken(bearer) : null;
    request.user = bearer?.startsWith(WORKER_TOKEN_PREFIX) ? null : await ctx.authenticate(request);
    // A wrong or malformed token is a guess and counts against the client's address (no header: a plain 401).
    if (request.user === null && request.worker === null && request.headers.authorization !== undefined) await limitCredentials(request, reply);
    if (isWorkerApi(request)) {
      if (request.worker === null) throw new StrataError('STRATA_UNAUTHORIZED', 'the worker API needs a worker token', { hint: 'strata worker add <name> makes one' });
      return;
    }
    if (request.user === null && needsLogin(request)) {
      throw new StrataError('STRATA_UNAUTHORIZED', 'not logged in', { hint: 'POST /api/login, or send Authorization: Bearer <token> (`strata user token <name>` makes one)' });
    }
  });

  await app.register(authRoutes, { ctx, users: options.users, limitCredentials });
  await app.register(repoRoutes, { ctx });
  await app.register(jobRoutes, { ctx, heartbeatMs: options.sseHeartbeatMs ?? 15_000 });
  // The other engineers' plugins, each in its own encapsulated scope (own parsers, hooks).
  await app.register(webhookRoutes, { ctx });
  await app.register(terminalRoutes, { ctx });
  await app.register(previewRoutes, { ctx });
  await app.register(workerRoutes, { ctx });

  await registerUi(app, options.uiDir ?? DEFAULT_UI_DIR);
  return { app, ctx };
}

const PUBLIC_API_ROUTES = new Set(['POST /api/login', 'POST /api/webhooks/:repo']);

function isWorkerApi(request: FastifyRequest): boolean {
  const path = request.url.split('?', 1)[0] as string;
  return path === '/api/worker' || path.startsWith('/api/worker/');
}

function needsLogin(request: FastifyRequest): boolean {
  const path = request.url.split('?', 1)[0] as string;
  if (path !== '/api' && !path.startsWith('/api/')) return false;
  // The matched route's pattern, not the raw URL, decides: no path trick reaches a public route's handler.
  return !PUBLIC_API_ROUTES.has(`${request.method} ${request.routeOptions.url ?? ''}`);
}

/** dist/ui/ at `/`; other GETs outside /api and /preview get index.html (client-side routes). */
async function registerUi(app: FastifyInstance, uiDir: string): Promise<void> {
  const built = existsSync(`${uiDir}/index.html`);
  if (built) await app.register(fastifyStatic, { root: uiDir, prefix: '/' });
  const notBuilt = 'strata: the web UI is not built. Run `npm run build` in the strata checkout (it writes dist/ui/), then restart `strata serve`. The API is at /api.\n';
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?', 1)[0] as string;
    const isPage = (request.method === 'GET' || request.method === 'HEAD') && !/^\/(api|preview)(\/|$)/.test(path);
    if (!isPage) return reply.status(404).send(apiError('STRATA_NOT_FOUND', `no route ${request.method} ${path}`));
    if (!built) return reply.status(404).type('text/plain; charset=utf-8').send(notBuilt);
    return reply.type('text/html; charset=utf-8').sendFile('index.html');
  });
}
