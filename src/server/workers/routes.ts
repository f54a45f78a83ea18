// The worker API (/api/worker/..., worker tokens only: see app.ts) and the workers' list for people
// (GET /api/workers). A worker reports itself at every heartbeat; its engine reaches the server's
// stores through POST /api/worker/store/:port/:method (rpc.ts).
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { ServerContext } from '../context.js';
import { parseInput } from '../http/validate.js';
import { StrataError } from '../../errors.js';
import type { WorkerJobs } from '../jobs/remote.js';
import { callStore } from './rpc.js';
import type { WorkerEvent } from './protocol.js';

const HeartbeatBody = z.object({ info: z.record(z.string(), z.unknown()).default({}) });
const StoreParams = z.object({ port: z.string().max(40), method: z.string().max(40) });
const StoreBody = z.object({ args: z.array(z.unknown()).max(16) });
const JobParams = z.object({ id: z.string().min(1).max(200) });
const EventsBody = z.object({
  events: z.array(z.object({ kind: z.enum(['runStart', 'runnerStart', 'stepStatus', 'stepOutput', 'runnerEnd', 'commit', 'button', 'note']) }).passthrough()).max(10_000),
});
const EndBody = z.object({
  status: z.enum(['success', 'failure', 'error', 'cancelled', 'abandoned']),
  message: z.string().max(100_000).nullable(),
  stepsRan: z.number().int().min(0).optional(),
  stepsCached: z.number().int().min(0).optional(),
});

export async function workerRoutes(app: FastifyInstance, options: { ctx: ServerContext }): Promise<void> {
  const { ctx } = options;
  const workerName = (request: { worker: { name: string } | null }): string => (request.worker as { name: string }).name;

  app.post('/api/worker/heartbeat', async (request) => {
    const { info } = parseInput(HeartbeatBody, request.body ?? {}, 'body');
    await ctx.workers.seen(workerName(request), info, Date.now());
    return { worker: workerName(request) };
  });

  // Chain steps carry traces: a step that read many files makes a large body.
  app.post('/api/worker/store/:port/:method', { bodyLimit: 64 * 1024 * 1024 }, async (request) => {
    const { port, method } = parseInput(StoreParams, request.params, 'params');
    const { args } = parseInput(StoreBody, request.body, 'body');
    const result = await callStore(ctx.engine, port, method, args);
    return { result: result === undefined ? null : result };
  });

  const jobs = (): WorkerJobs => {
    if (!ctx.jobs.workerJobs) throw new StrataError('STRATA_NOT_FOUND', 'this server hands no jobs to workers');
    return ctx.jobs.workerJobs;
  };
  app.post('/api/worker/jobs/lease', async (request, reply) => {
    const lease = await jobs().lease(workerName(request));
    return lease ?? reply.code(204).send();
  });
  app.post('/api/worker/jobs/:id/renew', async (request) => jobs().renew(workerName(request), parseInput(JobParams, request.params, 'params').id));
  // Step output comes in batches: up to the engine's per-step cap at a time.
  app.post('/api/worker/jobs/:id/events', { bodyLimit: 64 * 1024 * 1024 }, async (request) => {
    const { events } = parseInput(EventsBody, request.body, 'body');
    await jobs().report(workerName(request), parseInput(JobParams, request.params, 'params').id, events as unknown as WorkerEvent[]);
    return {};
  });
  app.post('/api/worker/jobs/:id/end', async (request) => {
    const end = parseInput(EndBody, request.body, 'body');
    await jobs().end(workerName(request), parseInput(JobParams, request.params, 'params').id, end);
    return {};
  });

  app.get('/api/workers', async () => ({ workers: await ctx.workers.list() }));
}
