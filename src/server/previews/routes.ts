// `/preview/:jobId/:runner/*`: a successful job's EXPOSE WEBSITE, proxied to a machine woken on demand
// (manager.ts). Bodies stream both ways untouched (no body parsing here); headers are kept, except
// strata's own credentials, which a machine running the repository's code must never see.
import type { IncomingHttpHeaders } from 'node:http';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { forwardRequest, routeRequest } from '../../engine/expose.js';
import { isStrataError, StrataError } from '../../errors.js';
import { SESSION_COOKIE } from '../auth/authenticate.js';
import type { ServerContext } from '../context.js';
import { apiError } from '../http/errors.js';
import { createPreviewManager, type PreviewManager } from './manager.js';

export interface PreviewRoutesOptions {
  ctx: ServerContext;
  /** Default: one made from ctx (engine, db, config.previewIdleMs), closed when the app closes. */
  previews?: PreviewManager | undefined;
}

/** The preview link of a runner's EXPOSE WEBSITE line with path prefix `prefix` ('/' by default). */
export function previewUrl(publicUrl: string, jobId: string, runner: string, prefix = '/'): string {
  const path = prefix.replace(/^\/+|\/+$/g, '');
  return `${publicUrl.replace(/\/+$/, '')}/preview/${encodeURIComponent(jobId)}/${encodeURIComponent(runner)}/${path === '' ? '' : `${path}/`}`;
}

const STATUS: Record<string, number> = {
  STRATA_UNAUTHORIZED: 401,
  STRATA_NOT_FOUND: 404,
  STRATA_GONE: 410,
  // The machine could not be started as recorded (a background command fails now): the upstream failed.
  STRATA_ENGINE: 502,
  STRATA_SANDBOX_START: 502,
  STRATA_CANCELLED: 503,
};

function sendError(reply: FastifyReply, error: unknown): FastifyReply {
  if (isStrataError(error) && STATUS[error.code]) return reply.status(STATUS[error.code] as number).send(apiError(error.code, error.message, error.hint));
  reply.log.error({ err: error }, 'preview failed');
  return reply.status(500).send(apiError('STRATA_INTERNAL', 'internal server error', 'the server log has the details'));
}

/** The request's headers without strata's session cookie (and without its bearer token when `dropAuthorization`). */
function headersForMachine(headers: IncomingHttpHeaders, dropAuthorization: boolean, prefix: string): IncomingHttpHeaders {
  const { cookie, authorization, ...rest } = headers;
  const kept = (cookie ?? '')
    .split(';')
    .map((c) => c.trim())
    .filter((c) => c !== '' && c.split('=')[0]?.trim() !== SESSION_COOKIE)
    .join('; ');
  return {
    ...rest,
    ...(kept ? { cookie: kept } : {}),
    ...(authorization !== undefined && !dropAuthorization ? { authorization } : {}),
    // Where the site is mounted, for apps that build absolute links.
    'x-forwarded-prefix': prefix,
  };
}

/**
 * Previews share the server's origin, and the previewed site runs the repository's code: a script on
 * it could call /api with the visitor's session. The CSP sandbox (without allow-same-origin) gives the
 * page an opaque origin, so its requests to /api are cross-site: no session cookie, no readable answer.
 * (Sites that need their own cookies or storage need a preview host of their own; not built yet.)
 */
export const PREVIEW_SANDBOX_POLICY = 'sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads';

/** The answer's headers without cookies that would replace strata's session cookie, with the sandbox policy. */
function answerHeadersForClient(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const setCookie = headers['set-cookie']?.filter((c) => c.split('=')[0]?.trim() !== SESSION_COOKIE);
  const { 'set-cookie': _dropped, 'content-security-policy': siteCsp, ...rest } = headers;
  // Several CSP headers all apply: the site's own policy stays, ours is added.
  const csp = [...(siteCsp === undefined ? [] : [siteCsp].flat()), PREVIEW_SANDBOX_POLICY];
  return { ...rest, 'content-security-policy': csp as unknown as string, ...(setCookie && setCookie.length > 0 ? { 'set-cookie': setCookie } : {}) };
}

export async function previewRoutes(app: FastifyInstance, options: PreviewRoutesOptions): Promise<void> {
  const { ctx } = options;
  const previews =
    options.previews ??
    createPreviewManager({
      deps: ctx.engine,
      idleMs: ctx.config.previewIdleMs,
      onNotice: (line) => ctx.log.warn(line),
    });
  if (!options.previews) app.addHook('onClose', () => previews.close());

  await app.register(async (scope) => {
    // Bodies go to the machine as they come: nothing here reads them.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_request, _payload, done) => done(null));

    // Relative links of the site need the trailing slash.
    scope.all<{ Params: { jobId: string; runner: string } }>('/preview/:jobId/:runner', async (request, reply) => {
      const url = request.raw.url ?? '';
      const queryAt = url.indexOf('?');
      const [path, query] = queryAt === -1 ? [url, ''] : [url.slice(0, queryAt), url.slice(queryAt)];
      return reply.redirect(`${path}/${query}`, 308);
    });

    scope.all<{ Params: { jobId: string; runner: string } }>('/preview/:jobId/:runner/*', async (request, reply) => {
      const { jobId, runner } = request.params;
      const job = await ctx.jobs.get(jobId);
      const isPublic = job !== null && ((await ctx.repos.get(job.repo))?.publicPreviews ?? false);
      if (!isPublic && !(await ctx.authenticate(request))) {
        return sendError(reply, new StrataError('STRATA_UNAUTHORIZED', 'log in to see this preview', { hint: 'previews are private unless the repository has publicPreviews' }));
      }
      if (!job) return sendError(reply, new StrataError('STRATA_NOT_FOUND', `no job ${jobId}`));
      if (job.status !== 'SUCCESS' || job.runId === null) {
        return sendError(reply, new StrataError('STRATA_NOT_FOUND', `job ${jobId} did not succeed (${job.status}): previews exist only for successful jobs`));
      }
      if (!job.runners.some((r) => r.runner === runner)) {
        return sendError(reply, new StrataError('STRATA_NOT_FOUND', `job ${jobId} has no runner ${JSON.stringify(runner)}`, { hint: `runners: ${job.runners.map((r) => r.runner).join(', ')}` }));
      }
      if (job.worker !== undefined) {
        return sendError(reply, new StrataError('STRATA_NOT_FOUND', `job ${jobId} ran on worker ${job.worker}: previews of a worker's jobs are not served yet (its machines are on that host)`));
      }

      // The path inside the preview, as the client sent it (still encoded), with its query.
      const rawUrl = request.raw.url ?? '';
      const mount = /^\/preview\/[^/?]+\/[^/?]+/.exec(rawUrl)?.[0] ?? '';
      const inner = rawUrl.slice(mount.length) || '/';

      let lease;
      try {
        lease = await previews.open(job.runId, runner, { secrets: () => ctx.repos.secretsFor(job.repo) });
      } catch (error) {
        return sendError(reply, error);
      }
      const match = routeRequest(lease.routes, inner);
      if (!match) {
        lease.release();
        return sendError(reply, new StrataError('STRATA_NOT_FOUND', `no EXPOSE WEBSITE of ${runner} serves ${inner}`));
      }
      // From here the raw response is ours; the lease ends with it (streams included).
      reply.hijack();
      const headers = headersForMachine(request.headers, !isPublic, mount);
      // (Websocket upgrades never get here: @fastify/websocket answers every upgrade itself and closes
      // those of routes without a websocket handler. Previews do not proxy websockets yet.)
      reply.raw.on('close', () => lease.release());
      forwardRequest(match.route, match.path, request.raw, reply.raw, { headers, answerHeaders: answerHeadersForClient });
      return reply;
    });
  });
}
