// Jobs (delegating to ctx.jobs), their server-sent event stream, logs, and duration statistics.
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { StrataError } from '../../errors.js';
import type { JobDetail, JobEvent, JobStatus } from '../api/types.js';
import type { ServerContext } from '../context.js';
import { parseInput } from './validate.js';

const JOB_STATUSES = ['NEW', 'WAITING_PARENTS', 'RUNNING', 'SUCCESS', 'FAILURE', 'ERROR', 'CANCELLED'] as const;
const FINISHED: ReadonlySet<JobStatus> = new Set(['SUCCESS', 'FAILURE', 'ERROR', 'CANCELLED']);
const REPO = z.string().min(1).max(100);
const JobParams = z.object({ id: z.string().min(1).max(200) });
const ButtonParams = z.object({ id: z.string().min(1).max(200), buttonId: z.string().min(1).max(200) });
const JobsQuery = z.object({
  repo: REPO.optional(),
  status: z.enum(JOB_STATUSES).optional(),
  q: z.string().max(200).optional(),
  limit: z.coerce.number().int().min(1).max(500).optional(),
  before: z.string().min(1).max(200).optional(),
});
const LogQuery = z.object({ runner: z.string().min(1).max(500).optional(), step: z.coerce.number().int().min(0).optional() });
const RetryBody = z.object({ noCache: z.boolean().optional(), noCacheDirs: z.boolean().optional() });
const DurationsQuery = z.object({ repo: REPO.optional(), limit: z.coerce.number().int().min(1).max(1000).optional() });
/** `Last-Event-ID` (an EventSource's reconnect), or `?lastEventId=` for a first connection that resumes. */
const EVENT_ID = z.coerce.number().int().min(0);

export interface JobRouteOptions {
  ctx: ServerContext;
  /** A comment line is sent this often so proxies and browsers keep an idle stream open. */
  heartbeatMs: number;
}

export async function jobRoutes(app: FastifyInstance, options: JobRouteOptions): Promise<void> {
  const { ctx, heartbeatMs } = options;
  // Open event streams end when the server closes; otherwise close() would wait for them forever.
  const openStreams = new Set<() => void>();
  app.addHook('preClose', async () => {
    for (const finish of [...openStreams]) finish();
  });
  const jobWithId = async (id: string): Promise<JobDetail> => {
    const job = await ctx.jobs.get(id);
    if (!job) throw new StrataError('STRATA_NOT_FOUND', `no job ${id}`);
    return job;
  };

  app.get('/api/jobs', async (request) => ({ jobs: await ctx.jobs.list(parseInput(JobsQuery, request.query, 'query')) }));

  app.get('/api/jobs/:id', async (request) => ({ job: await jobWithId(parseInput(JobParams, request.params, 'params').id) }));

  app.get('/api/jobs/:id/log', async (request, reply) => {
    const { id } = parseInput(JobParams, request.params, 'params');
    await jobWithId(id);
    const text = await ctx.jobs.log(id, parseInput(LogQuery, request.query, 'query'));
    return reply.type('text/plain; charset=utf-8').send(text);
  });

  app.post('/api/jobs/:id/cancel', async (request) => {
    const { id } = parseInput(JobParams, request.params, 'params');
    await jobWithId(id);
    return { job: await ctx.jobs.cancel(id) };
  });

  app.post('/api/jobs/:id/retry', async (request) => {
    const { id } = parseInput(JobParams, request.params, 'params');
    const body = parseInput(RetryBody, request.body, 'body');
    await jobWithId(id);
    return { job: await ctx.jobs.retry(id, body) };
  });

  app.post('/api/jobs/:id/buttons/:buttonId/approve', async (request) => {
    const { id, buttonId } = parseInput(ButtonParams, request.params, 'params');
    const job = await jobWithId(id);
    if (!job.runners.some((runner) => runner.buttons.some((button) => button.id === buttonId))) {
      throw new StrataError('STRATA_NOT_FOUND', `job ${id} has no button ${buttonId}`);
    }
    return { job: await ctx.jobs.approveButton(id, buttonId, request.user?.name ?? 'unknown') };
  });

  app.get('/api/stats/durations', async (request) => ({ points: await ctx.jobs.durations(parseInput(DurationsQuery, request.query, 'query')) }));

  app.get('/api/jobs/:id/events', async (request, reply) => {
    const { id } = parseInput(JobParams, request.params, 'params');
    const header = request.headers['last-event-id'];
    const query = request.query as { lastEventId?: unknown };
    const resumeFrom = header ?? query.lastEventId;
    const afterSeq = resumeFrom === undefined ? 0 : parseInput(EVENT_ID, resumeFrom, 'query');
    await jobWithId(id);

    // Stored events arrive synchronously inside subscribe(); they are held until the headers are out.
    const held: Array<[number, JobEvent]> = [];
    let deliver = (seq: number, event: JobEvent) => void held.push([seq, event]);
    const unsubscribe = ctx.jobs.subscribe(id, afterSeq, (seq, event) => deliver(seq, event));
    // Nothing after Last-Event-ID and the job is over: 204 tells an EventSource to stop reconnecting.
    if (held.length === 0 && FINISHED.has((await jobWithId(id)).status)) {
      unsubscribe();
      return reply.code(204).send();
    }

    // From here on the response is a stream we write ourselves; errors can no longer become JSON.
    reply.hijack();
    const stream = reply.raw;
    stream.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no', // nginx: do not buffer the stream
    });
    stream.write('retry: 2000\n\n');

    let finished = false;
    const heartbeat = setInterval(() => stream.write(': heartbeat\n\n'), heartbeatMs);
    const finish = () => {
      if (finished) return;
      finished = true;
      openStreams.delete(finish);
      clearInterval(heartbeat);
      unsubscribe();
      stream.end();
    };
    openStreams.add(finish);
    request.raw.on('close', finish);
    stream.on('error', finish);
    deliver = (seq, event) => {
      if (finished) return;
      stream.write(`id: ${seq}\ndata: ${JSON.stringify(event)}\n\n`);
      // 'end' is a job's last event: closing tells the client there is nothing more to wait for.
      if (event.type === 'end') finish();
    };
    for (const [seq, event] of held) deliver(seq, event);
  });
}
