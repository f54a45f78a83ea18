// The debug terminal: a websocket at /api/jobs/:id/runners/:runner/terminal with a login shell on a
// real pty inside a throwaway machine cloned from the runner's failure snapshot (what `strata shell`
// opens). Protocol (docs/server-api.md): the client sends JSON {type:'input', data} and
// {type:'resize', cols, rows}; the server sends the terminal's output as text frames, and at the end a
// text frame "\u0000" + JSON {type:'exit', code}. When the socket closes, the shell is killed, the
// machine destroyed and the clone removed: nothing done in the terminal reaches the cache.
import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type {} from '@fastify/websocket'; // the `websocket: true` route option
import { spawn as spawnPty, type IPty } from 'node-pty';
import { machineShellCommand, pickShellSnapshot } from '../../engine/debugShell.js';
import { machineDefaults } from '../../engine/machineDefaults.js';
import type { EngineMachine } from '../../engine/ports.js';
import { isStrataError, StrataError } from '../../errors.js';
import { snapshotKey, type SnapshotName } from '../../snapshot/types.js';
import type { ServerContext } from '../context.js';
import { apiError } from '../http/errors.js';

export interface TerminalRoutesOptions {
  ctx: ServerContext;
}

/** What is used of the server side `ws` socket (the package has no type declarations here). */
interface TerminalSocket {
  readonly readyState: number;
  readonly OPEN: number;
  send(data: string): void;
  close(code?: number): void;
  on(event: 'message', listener: (data: Buffer, isBinary: boolean) => void): void;
  on(event: 'close', listener: () => void): void;
}

type ClientMessage = { type: 'input'; data: string } | { type: 'resize'; cols: number; rows: number };

/** The frame that ends a session; output frames never start with NUL. */
export function exitFrame(code: number): string {
  return `\u0000${JSON.stringify({ type: 'exit', code })}`;
}

function parseMessage(raw: string): ClientMessage | null {
  try {
    const message = JSON.parse(raw) as Partial<{ type: unknown; data: unknown; cols: unknown; rows: unknown }>;
    if (message.type === 'input' && typeof message.data === 'string') return { type: 'input', data: message.data };
    const size = (n: unknown): n is number => Number.isInteger(n) && (n as number) > 0 && (n as number) <= 1000;
    if (message.type === 'resize' && size(message.cols) && size(message.rows)) return { type: 'resize', cols: message.cols, rows: message.rows };
  } catch {
    // not JSON: ignored like any message this protocol does not know
  }
  return null;
}

const STATUS: Record<string, number> = { STRATA_UNAUTHORIZED: 401, STRATA_NOT_FOUND: 404, STRATA_GONE: 410 };

interface Target {
  runner: string;
  step: number;
  snapshot: SnapshotName;
}

interface Params {
  id: string;
  runner: string;
}

/** Which failure snapshot the terminal opens, or the error to answer before the upgrade. */
async function resolveTarget(ctx: ServerContext, request: FastifyRequest<{ Params: Params }>): Promise<Target> {
  if (!(await ctx.authenticate(request))) throw new StrataError('STRATA_UNAUTHORIZED', 'log in to open a terminal');
  const { id, runner } = request.params;
  const job = await ctx.jobs.get(id);
  if (!job) throw new StrataError('STRATA_NOT_FOUND', `no job ${id}`);
  if (job.worker !== undefined) throw new StrataError('STRATA_NOT_FOUND', `job ${id} ran on worker ${job.worker}: the debug terminal of a worker's jobs is not served yet (its snapshots are on that host)`);
  const run = job.runId === null ? undefined : await ctx.engine.runLog.getRun(job.runId);
  if (!run) throw new StrataError('STRATA_NOT_FOUND', `job ${id} has not run yet`);
  if (!run.runners.some((r) => r.runner === runner)) throw new StrataError('STRATA_NOT_FOUND', `job ${id} has no runner ${JSON.stringify(runner)}`);
  let chosen: ReturnType<typeof pickShellSnapshot>;
  try {
    chosen = pickShellSnapshot(run, { runner });
  } catch (cause) {
    throw new StrataError('STRATA_NOT_FOUND', `runner ${runner} of job ${id} has no failed step to debug`, { cause });
  }
  const snapshot = chosen.snapshot as SnapshotName;
  if (!(await ctx.engine.snapshots.has(snapshot))) {
    throw new StrataError('STRATA_GONE', `the failure snapshot of ${runner} (${snapshot}) is no longer in the store`, { hint: 'retention removed it; run the job again' });
  }
  return { runner: chosen.runner, step: chosen.step, snapshot };
}

export async function terminalRoutes(app: FastifyInstance, options: TerminalRoutesOptions): Promise<void> {
  const { ctx } = options;
  const targets = new WeakMap<FastifyRequest, Target>();
  const sessions = new Set<() => Promise<void>>();
  app.addHook('onClose', async () => {
    await Promise.all([...sessions].map((end) => end()));
  });

  app.get<{ Params: Params; Querystring: { cols?: string; rows?: string } }>('/api/jobs/:id/runners/:runner/terminal', {
    websocket: true,
    // Checked before the upgrade, so that a client gets a plain HTTP status (401, 404, 410).
    preValidation: async (request, reply: FastifyReply) => {
      try {
        targets.set(request, await resolveTarget(ctx, request));
      } catch (error) {
        if (isStrataError(error) && STATUS[error.code]) return reply.status(STATUS[error.code] as number).send(apiError(error.code, error.message, error.hint));
        throw error;
      }
    },
  }, (socket: TerminalSocket, request) => {
    const target = targets.get(request) as Target;
    const size = (value: string | undefined, fallback: number): number => {
      const n = Number(value);
      return Number.isInteger(n) && n > 0 && n <= 1000 ? n : fallback;
    };
    let cols = size(request.query.cols, 80);
    let rows = size(request.query.rows, 24);
    const token = randomBytes(4).toString('hex');
    const key = snapshotKey(`active.terminal-${token}`);
    let machine: EngineMachine | undefined;
    let shell: IPty | undefined;
    // Messages that arrive while the machine starts are applied once the shell runs.
    const pending: ClientMessage[] = [];
    let ending: Promise<void> | undefined;

    const apply = (message: ClientMessage): void => {
      if (!shell) {
        if (message.type === 'resize') ({ cols, rows } = message);
        else pending.push(message);
      } else if (message.type === 'input') shell.write(message.data);
      else shell.resize(message.cols, message.rows);
    };
    const end = (): Promise<void> =>
      (ending ??= (async () => {
        sessions.delete(end);
        // The machine first: destroying it ends everything in it, nsenter and the shell included.
        await machine?.destroy().catch((error: unknown) => request.log.warn({ err: error }, 'terminal: destroying the machine failed'));
        shell?.kill();
        await ctx.engine.snapshots.remove(key).catch(() => {});
        if (socket.readyState === socket.OPEN) socket.close(1000);
      })());
    sessions.add(end);

    // Handlers are attached at once: messages are not lost while the machine starts.
    socket.on('message', (data, isBinary) => {
      const message = isBinary ? null : parseMessage(data.toString());
      if (message) apply(message);
    });
    socket.on('close', () => void end());

    const send = (text: string): void => {
      if (socket.readyState === socket.OPEN) socket.send(text);
    };
    void (async () => {
      try {
        const { path: rootfs } = await ctx.engine.snapshots.clone(target.snapshot, key);
        if (ending) return void (await ctx.engine.snapshots.remove(key).catch(() => {}));
        machine = await ctx.engine.sandbox.start({ id: `terminal-${token}`, rootfs, hostname: target.runner.toLowerCase().replace(/[^a-z0-9-]/g, '-').slice(0, 63) || 'machine', ...machineDefaults() });
        if (ending) return void (await machine.destroy().catch(() => {}));
        send(`strata: ${target.runner}, machine state after failed step ${target.step + 1}; changes are discarded when you leave\r\n`);
        const command = machineShellCommand(machine.pid, 'xterm-256color');
        const started = spawnPty(command.file, command.args, { name: 'xterm-256color', cols, rows, cwd: '/', env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' } });
        shell = started;
        for (const message of pending.splice(0)) apply(message);
        started.onData(send);
        started.onExit(({ exitCode }) => {
          send(exitFrame(exitCode));
          void end();
        });
      } catch (error) {
        request.log.error({ err: error }, 'terminal: starting the machine failed');
        send(`strata: the machine could not be started: ${error instanceof Error ? error.message : String(error)}\r\n`);
        send(exitFrame(-1));
        await end();
      }
    })();
  });
}
