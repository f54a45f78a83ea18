// EXPOSE WEBSITE / EXPOSE TCP: after a successful run, keep each exposing Layerfile's final state
// running and reach it from the host. For every such Layerfile: clone its final snapshot, start a
// machine with port forwarding, re-launch its RUN BACKGROUND commands (a snapshot holds files, not
// processes), and forward the exposed guest ports to free 127.0.0.1 ports (slirp4netns hostfwd). One
// host HTTP server then routes the preview URL by longest path prefix to the websites; EXPOSE TCP
// ports are printed as they are. Nothing here touches the cache: the machines run on throwaway
// active snapshots that close() removes (or, after a crash, the next openEngine does).
import { request as httpRequest, createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { StrataError } from '../errors.js';
import type { GraphNode } from '../layerfile/graph.js';
import type { ExposeWebsiteTarget, Instruction } from '../layerfile/types.js';
import { snapshotKey, type SnapshotName } from '../snapshot/types.js';
import type { BackgroundCommand } from '../store/cacheIndex.js';
import { machineDefaults } from './machineDefaults.js';
import { DEFAULT_MACHINE_MEMORY_BYTES, memoryLimitBefore } from './memory.js';
import type { EngineDeps, EngineMachine, StepExecResult } from './ports.js';
import type { OutputStream } from './reporter.js';
import type { LayerfileOutcome } from './runLayerfile.js';
import { noSecrets, secretValuesFor, type Secrets } from './secrets.js';

/** How long a website may take to answer its first request after its machine started (LAYERFILE.md). */
export const WEBSITE_WAIT_MS = 120_000;
/** A re-launched background command that exits non-zero this soon fails the exposure (as in runLayerfile). */
const BACKGROUND_CHECK_MS = 2000;

/** One EXPOSE WEBSITE line, resolved to the host port that reaches its machine's port. */
export interface WebsiteRoute {
  runner: string;
  /** Path prefix on the preview URL, starting with '/'. */
  prefix: string;
  rewrite: string | undefined;
  scheme: 'http' | 'https';
  /** The port inside the machine, and the 127.0.0.1 port forwarded to it. */
  guestPort: number;
  hostPort: number;
}

export type ExposedEndpoint =
  | { kind: 'website'; url: string; runner: string; target: string }
  | { kind: 'tcp'; host: string; port: number; runner: string; guestPort: number };

export interface Exposure {
  endpoints: ExposedEndpoint[];
  /** Stops the HTTP server, destroys the machines, removes their snapshots. Idempotent. */
  close(): Promise<void>;
}

export interface ExposeOptions {
  secrets?: Secrets | undefined;
  /** Port of the preview HTTP server on 127.0.0.1; a free one when absent. */
  previewPort?: number | undefined;
  /** Default WEBSITE_WAIT_MS. */
  waitMs?: number | undefined;
  /** Aborting stops the wait for the websites (close() still has to be called). */
  signal?: AbortSignal | undefined;
  /** Output of the re-launched background commands. */
  onOutput?: ((runner: string, stream: OutputStream, data: string) => void) | undefined;
  /** Progress and warnings, one line each. */
  onNotice?: ((line: string) => void) | undefined;
}

type ExposeWebsite = Extract<Instruction, { kind: 'exposeWebsite' }>;
type ExposeTcp = Extract<Instruction, { kind: 'exposeTcp' }>;

/** The Layerfiles of a run that have EXPOSE lines and succeeded with a final state to serve. */
export function exposingLayerfiles(result: { outcomes: Map<string, LayerfileOutcome>; nodes: readonly GraphNode[] }): Array<{ node: GraphNode; outcome: LayerfileOutcome }> {
  return result.nodes.flatMap((node) => {
    const outcome = result.outcomes.get(node.path);
    const exposes = node.layerfile.instructions.some((i) => i.kind === 'exposeWebsite' || i.kind === 'exposeTcp');
    return exposes && outcome?.status === 'success' && outcome.finalSnapshot ? [{ node, outcome }] : [];
  });
}

/** '/api' and '/api/' are the same prefix; '' is '/'. */
export function normalizePrefix(prefix: string): string {
  const withSlash = prefix.startsWith('/') ? prefix : `/${prefix}`;
  return withSlash.length > 1 ? withSlash.replace(/\/+$/, '') : '/';
}

/**
 * The route for a request path (longest matching prefix, whole segments only: '/api' matches '/api'
 * and '/api/x', never '/apix') and the path to send to the machine: unchanged, or with the prefix
 * replaced by the route's rewrite. The query string is kept.
 */
export function routeRequest(routes: readonly WebsiteRoute[], url: string): { route: WebsiteRoute; path: string } | undefined {
  const queryAt = url.indexOf('?');
  const pathname = queryAt === -1 ? url : url.slice(0, queryAt);
  const query = queryAt === -1 ? '' : url.slice(queryAt);
  let best: WebsiteRoute | undefined;
  for (const route of routes) {
    const prefix = normalizePrefix(route.prefix);
    const matches = prefix === '/' || pathname === prefix || pathname.startsWith(`${prefix}/`);
    if (matches && (!best || prefix.length > normalizePrefix(best.prefix).length)) best = route;
  }
  if (!best) return undefined;
  if (best.rewrite === undefined) return { route: best, path: pathname + query };
  const prefix = normalizePrefix(best.prefix);
  const rest = prefix === '/' ? pathname : pathname.slice(prefix.length);
  const base = best.rewrite.replace(/\/+$/, '');
  const joined = rest === '' ? base : `${base}${rest.startsWith('/') ? '' : '/'}${rest}`;
  return { route: best, path: (joined.startsWith('/') ? joined : `/${joined}`) + query };
}

/** Streams one request to the machine that its route names, and the answer back. */
function proxy(routes: readonly WebsiteRoute[], req: IncomingMessage, res: ServerResponse): void {
  const match = routeRequest(routes, req.url ?? '/');
  if (!match) {
    res.writeHead(404, { 'content-type': 'text/plain' }).end(`strata: no EXPOSE WEBSITE route for ${req.url}\n`);
    return;
  }
  forwardRequest(match.route, match.path, req, res);
}

export interface ForwardOptions {
  /** The headers sent to the machine (default: the request's own). */
  headers?: IncomingMessage['headers'] | undefined;
  /** Filters the answer's headers before they are sent back. */
  answerHeaders?: ((headers: IncomingMessage['headers']) => IncomingMessage['headers']) | undefined;
}

/** Streams one request to `route`'s machine at `path` (body included), and the answer back. */
export function forwardRequest(route: WebsiteRoute, path: string, req: IncomingMessage, res: ServerResponse, options: ForwardOptions = {}): void {
  const send = route.scheme === 'https' ? httpsRequest : httpRequest;
  const headers = options.headers ?? req.headers;
  // A self-signed certificate is what a dev server inside a CI machine has: it is not checked.
  const upstream = send(
    { host: '127.0.0.1', port: route.hostPort, method: req.method, path, headers, rejectUnauthorized: false },
    (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.statusMessage, options.answerHeaders ? options.answerHeaders(answer.headers) : answer.headers);
      answer.pipe(res);
    },
  );
  upstream.on('error', (error) => {
    if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
    res.end(`strata: ${route.runner} localhost:${route.guestPort} did not answer: ${error.message}\n`);
  });
  // The client gone: stop talking to the machine too.
  res.on('close', () => {
    if (!res.writableFinished) upstream.destroy();
  });
  req.pipe(upstream);
}

/** One request through the route; true when the machine's server answered anything (any status). */
function answers(route: WebsiteRoute): Promise<boolean> {
  const path = routeRequest([route], normalizePrefix(route.prefix))?.path ?? '/';
  const send = route.scheme === 'https' ? httpsRequest : httpRequest;
  return new Promise((resolve) => {
    const probe = send({ host: '127.0.0.1', port: route.hostPort, path, method: 'GET', timeout: 5000, rejectUnauthorized: false }, (answer) => {
      answer.resume();
      resolve(true);
    });
    probe.on('timeout', () => probe.destroy(new Error('timeout')));
    probe.on('error', () => resolve(false));
    probe.end();
  });
}

/** Polls the route until the machine's server answers (true) or `waitMs` passed (false). */
export async function waitUntilAnswering(route: WebsiteRoute, waitMs: number, signal: AbortSignal | undefined): Promise<boolean> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    if (signal?.aborted) return false;
    if (await answers(route)) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

function describe(result: StepExecResult): string {
  if (result.oomKilled) return 'was killed: out of memory';
  if (result.signal) return `was killed by ${result.signal}`;
  return `exited with code ${result.exitCode}`;
}

function listen(server: Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      const address = server.address();
      resolve(typeof address === 'object' && address ? address.port : port);
    });
  });
}

/** A machine started from a final state to be exposed: its background commands run again. */
export interface ExposedMachine {
  machine: EngineMachine;
  /** The 127.0.0.1 port forwarded to `guestPort` (one forward per guest port, shared by the lines that name it). */
  forward(guestPort: number): Promise<number>;
  /** Destroys the machine and removes its throwaway snapshot. */
  destroy(): Promise<void>;
}

export interface ExposedMachineRequest {
  /** Machine id; its throwaway snapshot is `active.<id>`. Keep it short (see MachineSpec.portForwarding). */
  id: string;
  runner: string;
  /** The Layerfile's path, for messages. */
  layerfile: string;
  instructions: readonly Instruction[];
  snapshot: SnapshotName;
  background: readonly BackgroundCommand[];
  /** The memory limit in force at the end of the run (LayerfileOutcome.memoryBytes); else the Layerfile's own MEMORY lines over the default. */
  memoryBytes?: number | undefined;
  secrets?: Secrets | undefined;
  onOutput?: ((stream: OutputStream, data: string) => void) | undefined;
}

/**
 * Clones `snapshot`, starts a machine with port forwarding on the clone and re-launches the background
 * commands (a snapshot holds files, not processes). On an error, whatever was started is cleaned up.
 */
export async function startExposedMachine(deps: Pick<EngineDeps, 'snapshots' | 'sandbox'>, request: ExposedMachineRequest): Promise<ExposedMachine> {
  const key = snapshotKey(`active.${request.id}`);
  const { path: rootfs } = await deps.snapshots.clone(request.snapshot, key);
  let machine: EngineMachine | undefined;
  const destroy = async (): Promise<void> => {
    await machine?.destroy().catch(() => {});
    await deps.snapshots.remove(key).catch(() => {});
  };
  try {
    const memoryBytes = request.memoryBytes ?? memoryLimitBefore(request.instructions, request.instructions.length, DEFAULT_MACHINE_MEMORY_BYTES);
    // CACHE directories are not mounted: the exposed machine must not write into the kept caches.
    machine = await deps.sandbox.start({ id: request.id, rootfs, hostname: request.runner.toLowerCase().replace(/[^a-z0-9-]/g, '-').slice(0, 63) || 'machine', memoryBytes, portForwarding: true, ...machineDefaults() });
    if (!machine.forwardPort) throw new StrataError('STRATA_ENGINE', 'this sandbox cannot forward ports, so EXPOSE cannot be served');
    const secrets = request.secrets ?? noSecrets;
    for (const command of request.background) {
      const env = command.secrets?.length ? { ...command.env, ...secretValuesFor(command.secrets, secrets, request.layerfile) } : command.env;
      const started = await machine.startBackground({ ...command, env, onOutput: (stream, data) => request.onOutput?.(stream, data) });
      const ended = await started.exitedWithin(BACKGROUND_CHECK_MS);
      if (ended && ended.exitCode !== 0) {
        throw new StrataError('STRATA_ENGINE', `${request.layerfile}: re-launching background command \`${command.command}\` for EXPOSE failed: it ${describe(ended)}`);
      }
    }
  } catch (error) {
    await destroy();
    throw error;
  }
  const started = machine;
  const forwarded = new Map<number, Promise<number>>();
  const forward = (guestPort: number): Promise<number> => {
    let hostPort = forwarded.get(guestPort);
    if (!hostPort) forwarded.set(guestPort, (hostPort = (started.forwardPort as (port: number) => Promise<number>)(guestPort)));
    return hostPort;
  };
  return { machine: started, forward, destroy };
}

/**
 * The routes of a Layerfile's EXPOSE WEBSITE lines, forwarded through `exposed`. A prefix that
 * `taken` (or an earlier line) already serves is ignored with a notice.
 */
export async function websiteRoutes(
  exposed: Pick<ExposedMachine, 'forward'>,
  layerfile: { runner: string; path: string; instructions: readonly Instruction[] },
  taken: readonly WebsiteRoute[] = [],
  onNotice?: (line: string) => void,
): Promise<WebsiteRoute[]> {
  const routes: WebsiteRoute[] = [];
  for (const instruction of layerfile.instructions) {
    if (instruction.kind !== 'exposeWebsite') continue;
    const target: ExposeWebsiteTarget = (instruction as ExposeWebsite).target;
    const prefix = normalizePrefix(target.path);
    const existing = [...taken, ...routes].find((r) => normalizePrefix(r.prefix) === prefix);
    if (existing) {
      onNotice?.(`${layerfile.path}:${instruction.range.line}: the prefix ${prefix} is already served by ${existing.runner} localhost:${existing.guestPort}; this line is ignored`);
      continue;
    }
    routes.push({ runner: layerfile.runner, prefix, rewrite: target.rewrite, scheme: target.scheme, guestPort: target.port, hostPort: await exposed.forward(target.port) });
  }
  return routes;
}

/**
 * Starts the machines of every exposing Layerfile of `result` and serves them; returns once every
 * website answered (or WEBSITE_WAIT_MS passed: that is a notice, the route is served anyway).
 * Returns null when nothing is exposed. On an error, whatever was started is cleaned up first.
 */
export async function startExposure(
  deps: Pick<EngineDeps, 'snapshots' | 'sandbox'>,
  result: { outcomes: Map<string, LayerfileOutcome>; nodes: readonly GraphNode[] },
  options: ExposeOptions = {},
): Promise<Exposure | null> {
  const exposing = exposingLayerfiles(result);
  if (exposing.length === 0) return null;
  const machines: ExposedMachine[] = [];
  let server: Server | undefined;
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      if (server) {
        const closed = new Promise<void>((resolve) => server?.close(() => resolve()));
        server.closeAllConnections();
        await closed;
      }
      for (const machine of machines) await machine.destroy();
    })());

  try {
    const routes: WebsiteRoute[] = [];
    const endpoints: ExposedEndpoint[] = [];
    for (const [index, { node, outcome }] of exposing.entries()) {
      const runner = node.runnerId;
      const instructions = node.layerfile.instructions;
      // Short ids: the forwarding socket lives in the machine's state dir (see MachineSpec). The store
      // lock makes them unique; leftovers of a crash are reaped by the next openEngine.
      const exposed = await startExposedMachine(deps, {
        id: `expose-${index}`,
        runner,
        layerfile: node.path,
        instructions,
        snapshot: outcome.finalSnapshot as SnapshotName,
        background: outcome.background ?? [],
        memoryBytes: outcome.memoryBytes,
        secrets: options.secrets,
        onOutput: (stream, data) => options.onOutput?.(runner, stream, data),
      });
      machines.push(exposed);
      routes.push(...(await websiteRoutes(exposed, { runner, path: node.path, instructions }, routes, options.onNotice)));
      for (const instruction of instructions) {
        if (instruction.kind === 'exposeTcp') {
          // `EXPOSE TCP :port [:dest]`: the machine's port is dest (default port); the host side is a
          // free 127.0.0.1 port, printed, so that two runs never collide on the host.
          const { dest } = instruction as ExposeTcp;
          endpoints.push({ kind: 'tcp', host: '127.0.0.1', port: await exposed.forward(dest), runner, guestPort: dest });
        }
      }
    }

    if (routes.length > 0) {
      const serving = createServer((req, res) => proxy(routes, req, res));
      server = serving;
      const port = await listen(serving, options.previewPort ?? 0);
      const waitMs = options.waitMs ?? WEBSITE_WAIT_MS;
      const answered = await Promise.all(routes.map((route) => waitUntilAnswering(route, waitMs, options.signal)));
      routes.forEach((route, i) => {
        if (!answered[i] && !options.signal?.aborted) {
          options.onNotice?.(`${route.runner} localhost:${route.guestPort} did not answer within ${Math.round(waitMs / 1000)} s (is it listening on 0.0.0.0, not only 127.0.0.1?); serving it anyway`);
        }
      });
      const websites: ExposedEndpoint[] = routes.map((route) => ({
        kind: 'website',
        url: `http://127.0.0.1:${port}${route.prefix === '/' ? '/' : `${route.prefix}/`}`,
        runner: route.runner,
        target: `localhost:${route.guestPort}${route.rewrite !== undefined ? ` ${route.rewrite}` : ''}`,
      }));
      endpoints.unshift(...websites);
    }
    return { endpoints, close };
  } catch (error) {
    await close();
    throw error;
  }
}
