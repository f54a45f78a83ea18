// POST /api/webhooks/:repo — GitHub, Gitea and Forgejo push / pull_request webhooks. No login: the body
// is signed with the repo's webhook secret (HMAC-SHA256 over the exact bytes received), so this plugin
// keeps the raw body (its own content-type parser, scoped to it) and compares digests in constant time.
// A delivery id is accepted once (replays: 409). Push → a job for `after` on the branch; a pull request
// opened / synchronized / reopened → a job for the head commit on the head branch, carrying the pull
// request's web page (the job's LAYERCI_PULL_REQUEST).
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { StoreDatabase } from '../../store/database.js';
import type { ServerContext } from '../context.js';
import type { NewJob } from '../jobs/types.js';

/** Delivery ids are remembered this long (forges redeliver recent deliveries only). */
export const DELIVERY_MEMORY_MS = 30 * 24 * 3600_000;
/** GitHub's payloads are at most 25 MB. */
const BODY_LIMIT = 25 * 1024 * 1024;

const ZERO_SHA = /^0+$/;

const author = z.object({ name: z.string().optional(), username: z.string().optional() }).partial();
const commit = z.object({ id: z.string(), message: z.string().optional(), author: author.optional() });

const pushPayload = z.object({
  ref: z.string(),
  after: z.string(),
  deleted: z.boolean().optional(),
  head_commit: commit.nullish(),
  commits: z.array(commit).nullish(),
  pusher: z.object({ name: z.string().optional(), login: z.string().optional(), username: z.string().optional() }).partial().nullish(),
});

const pullRequestPayload = z.object({
  action: z.string(),
  pull_request: z.object({
    title: z.string().optional(),
    // The pull request's web page: GitHub, Gitea and Forgejo all send it; optional so a trimmed payload still builds.
    html_url: z.string().optional(),
    user: z.object({ login: z.string().optional(), username: z.string().optional() }).partial().nullish(),
    head: z.object({ sha: z.string(), ref: z.string() }),
  }),
});

/** What a webhook asks for: a job, or nothing (with the reason). */
export type WebhookDecision = { kind: 'job'; job: Omit<NewJob, 'repo'> } | { kind: 'ignored'; reason: string };

/** Gitea says "synchronized" where GitHub says "synchronize". */
const BUILD_PR_ACTIONS = new Set(['opened', 'synchronize', 'synchronized', 'reopened']);

/** Turns a verified event + payload into a decision. Throws a zod error on a malformed payload. */
export function decideWebhook(event: string, payload: unknown): WebhookDecision {
  if (event === 'push') {
    const push = pushPayload.parse(payload);
    if (!push.ref.startsWith('refs/heads/')) return { kind: 'ignored', reason: `not a branch: ${push.ref}` };
    const branch = push.ref.slice('refs/heads/'.length);
    if (push.deleted === true || ZERO_SHA.test(push.after)) return { kind: 'ignored', reason: `branch ${branch} was deleted` };
    const head = push.head_commit ?? push.commits?.find((c) => c.id === push.after) ?? null;
    return {
      kind: 'job',
      job: {
        branch,
        commit: push.after,
        title: firstLine(head?.message ?? ''),
        author: head?.author?.name ?? head?.author?.username ?? push.pusher?.name ?? push.pusher?.login ?? push.pusher?.username ?? '',
        trigger: 'push',
      },
    };
  }
  if (event === 'pull_request') {
    const pr = pullRequestPayload.parse(payload);
    if (!BUILD_PR_ACTIONS.has(pr.action)) return { kind: 'ignored', reason: `pull request action ${pr.action}` };
    const { head } = pr.pull_request;
    return {
      kind: 'job',
      job: {
        branch: head.ref,
        commit: head.sha,
        title: pr.pull_request.title ?? '',
        author: pr.pull_request.user?.login ?? pr.pull_request.user?.username ?? '',
        trigger: 'pull_request',
        pullRequestUrl: pr.pull_request.html_url,
      },
    };
  }
  return { kind: 'ignored', reason: `event ${event || '(none)'}` };
}

function firstLine(text: string): string {
  return text.split('\n', 1)[0]?.trim() ?? '';
}

/** The hex signatures a request carries (GitHub `sha256=<hex>`, Gitea / Forgejo `<hex>`). */
export function signaturesOf(headers: FastifyRequest['headers']): string[] {
  const header = (name: string) => {
    const value = headers[name];
    return typeof value === 'string' ? value.trim() : undefined;
  };
  const github = header('x-hub-signature-256');
  return [github?.startsWith('sha256=') ? github.slice('sha256='.length) : github, header('x-gitea-signature'), header('x-forgejo-signature')].filter(
    (s): s is string => s !== undefined && s !== '',
  );
}

/** True when `signature` (hex) is the HMAC-SHA256 of `body` under `secret`; constant time. */
export function verifySignature(secret: string, body: Buffer, signature: string): boolean {
  const expected = createHmac('sha256', secret).update(body).digest();
  if (!/^[0-9a-fA-F]{64}$/.test(signature)) return false;
  return timingSafeEqual(expected, Buffer.from(signature, 'hex'));
}

/**
 * Records a delivery id; false when it was seen (within DELIVERY_MEMORY_MS) before. Two statements, no
 * transaction: forgetting old ids first, then one insert that does nothing on a known id, which reports
 * the rows it inserted (0 on a conflict, on SQLite and Postgres alike), so of two concurrent deliveries
 * of one id exactly one is first.
 */
export async function firstDelivery(database: StoreDatabase, deliveryId: string, repo: string, now: number): Promise<boolean> {
  const db = database.sql;
  await db.deleteFrom('webhook_deliveries').where('received_at', '<', now - DELIVERY_MEMORY_MS).execute();
  const result = await db
    .insertInto('webhook_deliveries')
    .values({ delivery_id: deliveryId, repo, received_at: now })
    .onConflict((oc) => oc.column('delivery_id').doNothing())
    .executeTakeFirst();
  return Number(result.numInsertedOrUpdatedRows ?? 0n) === 1;
}

function fail(reply: FastifyReply, status: number, code: string, message: string, hint?: string) {
  return reply.code(status).send({ error: { code, message, ...(hint ? { hint } : {}) } });
}

function header(request: FastifyRequest, ...names: string[]): string {
  for (const name of names) {
    const value = request.headers[name];
    if (typeof value === 'string' && value !== '') return value;
  }
  return '';
}

/** The webhook route, as a Fastify plugin: `app.register(webhookRoutes, { ctx })`. */
export async function webhookRoutes(app: FastifyInstance, options: { ctx: ServerContext }): Promise<void> {
  const { ctx } = options;
  // A scope of its own: the raw-body parser must not replace the app's JSON parser elsewhere.
  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: BODY_LIMIT }, (_request, body, done) => done(null, body));

    scope.post<{ Params: { repo: string } }>('/api/webhooks/:repo', { bodyLimit: BODY_LIMIT }, async (request, reply) => {
      const repoName = request.params.repo;
      const repo = await ctx.repos.get(repoName);
      const secret = repo ? await ctx.repos.webhookSecret(repoName) : null;
      if (!repo || !secret) return fail(reply, 404, 'STRATA_NOT_FOUND', `no repository ${repoName}`);

      const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
      const signatures = signaturesOf(request.headers);
      if (signatures.length === 0) return fail(reply, 401, 'STRATA_UNAUTHORIZED', 'the webhook is not signed', 'set the webhook secret shown when the repository was added');
      if (!signatures.every((signature) => verifySignature(secret, body, signature))) {
        return fail(reply, 401, 'STRATA_UNAUTHORIZED', 'bad webhook signature', "the forge's webhook secret differs from the repository's");
      }

      const deliveryId = header(request, 'x-github-delivery', 'x-gitea-delivery', 'x-forgejo-delivery');
      if (deliveryId !== '' && !(await firstDelivery(ctx.db, deliveryId, repoName, Date.now()))) {
        return fail(reply, 409, 'STRATA_CONFLICT', `delivery ${deliveryId} was already received`);
      }

      const event = header(request, 'x-github-event', 'x-gitea-event', 'x-forgejo-event');
      let decision: WebhookDecision;
      try {
        decision = decideWebhook(event, parsePayload(request.headers['content-type'], body));
      } catch {
        return fail(reply, 400, 'STRATA_USAGE', `malformed ${event} payload`);
      }
      if (decision.kind === 'ignored') return reply.code(200).send({ ignored: decision.reason });
      const job = await ctx.jobs.enqueue({ repo: repoName, ...decision.job });
      request.log.info({ job: job.id, repo: repoName, event, delivery: deliveryId, commit: job.commit }, 'webhook');
      return reply.code(202).send({ job });
    });
  });
}

/** JSON, or GitHub's form encoding (`payload=<json>`). */
function parsePayload(contentType: string | undefined, body: Buffer): unknown {
  const text = body.toString('utf8');
  if (contentType?.startsWith('application/x-www-form-urlencoded')) return JSON.parse(new URLSearchParams(text).get('payload') ?? '');
  return JSON.parse(text);
}
