// `strata run [dir]`: run every Layerfile of the repo with the cache, showing live progress.
import { combineReporters, type Reporter } from '../../engine/reporter.js';
import { parseAge } from '../../engine/cacheDirs.js';
import { StrataError } from '../../errors.js';
import { openEngine, storePaths } from '../../compose/engine.js';
import { FailureCollector, shellWord } from '../reporters/failures.js';
import { JsonReporter, TerminalReporter } from '../reporters/terminal.js';

export interface RunCommandOptions {
  commit?: string;
  store?: string;
  json?: boolean;
  plain?: boolean;
  cache?: boolean;
  acceptButtons?: boolean;
  /** false with --no-cache-dirs. */
  cacheDirs?: boolean;
  /** A dotenv-style file of SECRET ENV values; `STRATA_SECRET_<NAME>` variables fill in the rest. */
  secrets?: string;
  /** false with --no-expose: do not serve EXPOSE WEBSITE/TCP after a successful run. */
  expose?: boolean;
  /** Port of the EXPOSE WEBSITE preview server (default: a free one). */
  exposePort?: string;
  /** --step-timeout: e.g. 90s, 30m, 2h. */
  stepTimeout?: string;
  /** --from-checkpoint NAME. */
  fromCheckpoint?: string;
  /** --trust-host-ca: every machine trusts the host's CAs (else the host config's trust_host_ca). */
  trustHostCa?: boolean;
}

/** A duration with a unit (90s, 30m, 2h) in milliseconds. */
export function parseStepTimeout(text: string): number {
  if (!/^\s*\d+(?:\.\d+)?\s*[smhdw]\s*$/i.test(text)) {
    throw new StrataError('STRATA_USAGE', `invalid --step-timeout ${JSON.stringify(text)}`, { hint: 'a number with a unit: 90s, 30m, 2h' });
  }
  return parseAge(text);
}

export async function runCommand(dir: string, options: RunCommandOptions): Promise<number> {
  const { runRepository } = await import('../../engine/runRepository.js');
  const { loadSecrets } = await import('../../engine/secrets.js');
  // Read before the store is opened: an unreadable secrets file fails at once.
  const secrets = await loadSecrets({ file: options.secrets, env: process.env });
  const exposePort = options.exposePort === undefined ? undefined : Number(options.exposePort);
  if (exposePort !== undefined && !(Number.isInteger(exposePort) && exposePort >= 0 && exposePort <= 65535)) {
    throw new StrataError('STRATA_USAGE', `invalid --expose-port ${JSON.stringify(options.exposePort)}`, { hint: 'a TCP port, 1-65535 (0: a free one)' });
  }
  const stepTimeoutMs = options.stepTimeout === undefined ? undefined : parseStepTimeout(options.stepTimeout);
  const terminal = options.json ? undefined : new TerminalReporter({ stream: process.stdout, plain: options.plain ?? false });
  const failures = new FailureCollector();
  const reporters: Reporter[] = [terminal ?? new JsonReporter(process.stdout), failures];
  // On a terminal a BUTTON asks; elsewhere (CI, pipes, --json) only --accept-buttons lets a run past one.
  const approveButton = terminal && process.stdin.isTTY && process.stdout.isTTY ? buttonPrompt(terminal) : undefined;
  const engine = await openEngine({ store: options.store, reporter: combineReporters(...reporters), ...(options.trustHostCa ? { trustHostCa: true } : {}) });
  // Ctrl-C / SIGTERM cancel the run cleanly (machines destroyed, nothing half-cached); a second one
  // leaves at once, and the next run cleans up after it.
  const cancel = new AbortController();
  const onSignal = (signal: NodeJS.Signals): void => {
    if (cancel.signal.aborted) process.exit(130);
    process.stderr.write(`\nstrata: ${signal}: cancelling the run (again to quit at once)\n`);
    cancel.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // `strata run | head`: once nobody reads stdout, cancel the run cleanly (machines destroyed, nothing
  // half-cached) instead of dying of EPIPE mid-step with a stack trace. The listener stays for the
  // writes that still come while the run winds down.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE' && error.code !== 'ERR_STREAM_DESTROYED') throw error;
    if (!cancel.signal.aborted) cancel.abort();
  });
  try {
    const result = await runRepository(
      {
        repoDir: dir,
        commit: options.commit,
        noCache: options.cache === false,
        acceptButtons: options.acceptButtons ?? false,
        approveButton,
        secrets,
        noCacheDirs: options.cacheDirs === false,
        signal: cancel.signal,
        stepTimeoutMs,
        fromCheckpoint: options.fromCheckpoint,
        job: { remoteUrl: await remoteUrlOf(dir), orgName: engine.hostConfig.org_name },
      },
      engine.deps,
    );
    // From here on, SIGTERM belongs to the exposure (`strata stop`).
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    // Where each failure is (file:line) and how to look inside, on stderr: the last thing printed.
    const shell = (runner: string): string =>
      ['strata', 'shell', ...(options.store !== undefined ? ['--store', options.store] : []), '--runner', runner, dir].map(shellWord).join(' ');
    for (const line of await failures.format(shell)) process.stderr.write(line + '\n');
    if (result.status === 'cancelled') return 130;
    if (result.status !== 'success') return 1;
    if (options.expose === false) return 0;
    // EXPOSE WEBSITE/TCP: serve the final states until `strata stop` (with the store still locked).
    const { serveExposure } = await import('./stop.js');
    return await serveExposure(engine.deps, result, { storeRoot: storePaths(options.store).root, previewPort: exposePort, secrets, json: options.json });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await engine.close();
  }
}

/**
 * The URL of the repository's remote (LAYERCI_REPO_OWNER/NAME): the current branch's remote, else
 * `origin`, else the first one; undefined without remotes.
 */
async function remoteUrlOf(dir: string): Promise<string | undefined> {
  const { exec } = await import('../../util/exec.js');
  const git = async (...args: string[]): Promise<string> => {
    const result = await exec('git', ['-C', dir, ...args], { timeoutMs: 10_000 });
    return result.exitCode === 0 ? result.stdout.trim() : '';
  };
  const branch = await git('symbolic-ref', '--quiet', '--short', 'HEAD');
  const remotes = (await git('remote')).split('\n').filter(Boolean);
  const preferred = (branch ? await git('config', `branch.${branch}.remote`) : '') || (remotes.includes('origin') ? 'origin' : remotes[0]);
  if (!preferred || !remotes.includes(preferred)) return undefined;
  return (await git('remote', 'get-url', preferred)) || undefined;
}

/** Asks on the terminal, one BUTTON at a time (runners of one level may reach theirs together). */
function buttonPrompt(terminal: TerminalReporter): (request: { runner: string; layerfile: string; line: number; message: string }) => Promise<boolean> {
  let queue: Promise<unknown> = Promise.resolve();
  return (request) => {
    const asked = queue.then(() =>
      terminal.pauseFor(async () => {
        const { createInterface } = await import('node:readline/promises');
        const prompt = createInterface({ input: process.stdin, output: process.stdout });
        try {
          const answer = await prompt.question(`BUTTON ${request.runner} (${request.layerfile}:${request.line}): ${request.message} — approve? [y/N] `);
          return /^y(es)?$/i.test(answer.trim());
        } finally {
          prompt.close();
        }
      }),
    );
    queue = asked.catch(() => undefined);
    return asked;
  };
}
