// The `strata` command line. Thin: each command lazily imports the engine code it needs.
import { Command, CommanderError } from 'commander';
import { isStrataError, type StrataErrorCode } from '../errors.js';

const EXIT_CODES: Partial<Record<StrataErrorCode, number>> = {
  STRATA_USAGE: 2,
  STRATA_LAYERFILE_SYNTAX: 3,
  STRATA_LAYERFILE_GRAPH: 3,
};

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('strata')
    .description('Run Layerfiles: whole-machine CI pipelines with per-step snapshots and read-traced caching.')
    .exitOverride()
    // `strata worker --store X` (run) and `strata worker add NAME --store X`: each command's options are its own.
    .enablePositionalOptions();
  program
    .command('check [dir]')
    .description('Parse every Layerfile in a repo and show the DAG, runner ids, steps and errors (runs nothing).')
    .option('--json', 'print one JSON document instead of text')
    .action(async (dir: string | undefined, options: { json?: boolean }) => {
      const { checkCommand } = await import('./commands/check.js');
      process.exitCode = await checkCommand(dir ?? '.', options);
    });
  program
    .command('run [dir]')
    .description('Run every Layerfile of the repo, restoring the deepest snapshot whose reads are unchanged.')
    .option('--commit <rev>', 'run this git revision instead of the working tree')
    .option('--store <dir>', 'state directory (default $STRATA_STORE or /var/lib/strata)')
    .option('--no-cache', 'ignore cached snapshots: run every step')
    .option('--no-cache-dirs', 'run with empty, throwaway CACHE directories (the kept ones are not touched)')
    .option('--accept-buttons', 'approve every BUTTON of the run')
    .option('--secrets <file>', 'SECRET ENV values: NAME=value lines (else $STRATA_SECRET_<NAME>)')
    .option('--plain', 'plain line output even on a terminal')
    .option('--json', 'print a JSON event stream, one event per line')
    .option('--no-expose', 'do not serve EXPOSE WEBSITE/TCP after a successful run')
    .option('--expose-port <port>', 'port of the EXPOSE WEBSITE preview server on 127.0.0.1 (default: a free one)')
    .option('--step-timeout <duration>', 'kill a RUN step that runs longer than this (90s, 30m, 2h)')
    .option('--from-checkpoint <name>', 'rerun every step after `CHECKPOINT <name>` (the cache is used up to it)')
    .option('--trust-host-ca', "every machine trusts the host's CA bundle (else trust_host_ca in /etc/strata/config.json)")
    .action(async (dir: string | undefined, options: import('./commands/run.js').RunCommandOptions) => {
      const { runCommand } = await import('./commands/run.js');
      process.exitCode = await runCommand(dir ?? '.', options);
    });
  program
    .command('stop')
    .description('Stop the `strata run` that serves EXPOSE WEBSITE/TCP for a store (destroys its machines).')
    .option('--store <dir>', 'state directory (default $STRATA_STORE or /var/lib/strata)')
    .action(async (options: import('./commands/stop.js').StopOptions) => {
      const { stopCommand } = await import('./commands/stop.js');
      process.exitCode = await stopCommand(options);
    });
  program
    .command('shell [dir]')
    .description("Open a shell in a throwaway machine restored from the last run's failure snapshot (or --step N's).")
    .option('--runner <id>', 'which runner (default: the first with a failed step)')
    .option('--step <n>', 'the state after this step (1-based) instead of the failure')
    .option('--store <dir>', 'state directory (default $STRATA_STORE or /var/lib/strata)')
    .action(async (dir: string | undefined, options: import('./commands/shell.js').ShellOptions) => {
      const { shellCommand } = await import('./commands/shell.js');
      process.exitCode = await shellCommand(dir ?? '.', options);
    });
  program
    .command('why [dir]')
    .description("Explain the last run: each step cached or rerun, and the first path that made it rerun.")
    .option('--step <n>', 'only this step (1-based)')
    .option('--store <dir>', 'state directory (default $STRATA_STORE or /var/lib/strata)')
    .option('--json', 'print the run record as JSON')
    .action(async (dir: string | undefined, options: { step?: string; store?: string; json?: boolean }) => {
      const { whyCommand } = await import('./commands/why.js');
      process.exitCode = await whyCommand(dir ?? '.', options);
    });
  const cache = program.command('cache').description('Manage the CACHE directories kept between runs.');
  cache
    .command('prune')
    .description('Remove CACHE directories: all of them, or those unused for longer than --older-than.')
    .option('--store <dir>', 'state directory (default $STRATA_STORE or /var/lib/strata)')
    .option('--older-than <age>', 'only those unused for longer than this (30m, 12h, 7d, 2w)')
    .action(async (options: import('./commands/cache.js').CachePruneOptions) => {
      const { cachePruneCommand } = await import('./commands/cache.js');
      process.exitCode = await cachePruneCommand(options);
    });
  const machine = program.command('machine').description('Work with machines directly.').enablePositionalOptions();
  machine
    .command('run')
    .description('Run one command in a throwaway machine of an image and exit with its exit code.')
    .argument('<command...>', 'the command and its arguments (put them after --)')
    .requiredOption('--from <image>', 'base image, e.g. vm/debian:12')
    .option('--store <dir>', 'state directory (default $STRATA_STORE or /var/lib/strata)')
    .option('--memory <size>', 'memory limit of the machine, e.g. 512M or 2G')
    .passThroughOptions()
    .action(async (command: string[], options: import('./commands/machine.js').MachineRunOptions) => {
      const { machineRunCommand } = await import('./commands/machine.js');
      process.exitCode = await machineRunCommand(command, options);
    });
  program
    .command('serve')
    .description('Run the team server: web UI, JSON API, job queue and worker, webhooks, previews (until SIGTERM/SIGINT).')
    .option('--store <dir>', 'state directory (default $STRATA_STORE or /var/lib/strata)')
    .option('--listen <host:port>', 'address to listen on (default 127.0.0.1:7080)')
    .option('--public-url <url>', 'the URL people reach the server at (preview links, commit-status links)')
    .option('--database <url>', 'keep the server\'s state in Postgres (postgres://user:password@host/db; also $STRATA_DATABASE_URL); default the store\'s SQLite file')
    .option('--concurrency <n>', 'how many jobs this server runs at once (default 1; 0: only `strata worker`s run jobs)')
    .option('--admin-password <password>', 'password of the admin user created when there is no user yet (else $STRATA_ADMIN_PASSWORD, else random)')
    .option('--status-api <url>', 'GitHub-compatible API base URL to post commit statuses to')
    .option('--status-token <token>', 'token for --status-api (else $STRATA_STATUS_TOKEN)')
    .option('--preview-idle <age>', 'destroy a preview machine idle this long (default 10m)')
    .action(async (options: import('./commands/serve.js').ServeOptions) => {
      const { serveCommand } = await import('./commands/serve.js');
      process.exitCode = await serveCommand(options);
    });
  const repo = program.command('repo').description("Manage the server's repositories (writes the store's database directly).");
  repo
    .command('add <name> <url-or-path>')
    .description('Add a repository the server builds: a git URL or a local path.')
    .option('--store <dir>', 'state directory (default $STRATA_STORE or /var/lib/strata)')
    .option('--database <url>', 'the Postgres database of a server run with `strata serve --database` (also $STRATA_DATABASE_URL); default the store\'s SQLite file')
    .option('--branch <branch>', 'default branch (default: the local repo\'s HEAD branch, else main)')
    .option('--poll <seconds>', 'poll the branches every this many seconds (default: webhooks/manual only)')
    .action(async (name: string, url: string, options: import('./commands/repo.js').RepoAddOptions) => {
      const { repoAddCommand } = await import('./commands/repo.js');
      process.exitCode = await repoAddCommand(name, url, options);
    });
  repo
    .command('list')
    .description("List the server's repositories.")
    .option('--store <dir>', 'state directory (default $STRATA_STORE or /var/lib/strata)')
    .option('--database <url>', 'the Postgres database of a server run with `strata serve --database` (also $STRATA_DATABASE_URL); default the store\'s SQLite file')
    .option('--json', 'print JSON')
    .action(async (options: import('./commands/user.js').DatabaseOptions & { json?: boolean }) => {
      const { repoListCommand } = await import('./commands/repo.js');
      process.exitCode = await repoListCommand(options);
    });
  const user = program.command('user').description("Manage the server's users (writes the store's database directly).");
  user
    .command('add <name>')
    .description('Add a user; the password is read from stdin (its first line).')
    .option('--store <dir>', 'state directory (default $STRATA_STORE or /var/lib/strata)')
    .option('--database <url>', 'the Postgres database of a server run with `strata serve --database` (also $STRATA_DATABASE_URL); default the store\'s SQLite file')
    .action(async (name: string, options: import('./commands/user.js').DatabaseOptions) => {
      const { userAddCommand } = await import('./commands/user.js');
      process.exitCode = await userAddCommand(name, options);
    });
  user
    .command('token <name>')
    .description('Print a new API token of a user (for Authorization: Bearer; shown only once).')
    .option('--store <dir>', 'state directory (default $STRATA_STORE or /var/lib/strata)')
    .option('--database <url>', 'the Postgres database of a server run with `strata serve --database` (also $STRATA_DATABASE_URL); default the store\'s SQLite file')
    .action(async (name: string, options: import('./commands/user.js').DatabaseOptions) => {
      const { userTokenCommand } = await import('./commands/user.js');
      process.exitCode = await userTokenCommand(name, options);
    });
  const worker = program
    .command('worker')
    .enablePositionalOptions()
    .description("Run the server's jobs on this host (--server, --token); or manage workers (add, revoke, list: writes the server's database directly).")
    .option('--server <url>', 'the strata server (default $STRATA_SERVER)')
    .option('--token <token>', 'this worker\'s token, from `strata worker add` on the server (default $STRATA_WORKER_TOKEN)')
    .option('--store <dir>', 'state directory of this worker (default $STRATA_STORE or /var/lib/strata)')
    .option('--concurrency <n>', 'how many jobs at once (default 1)')
    .action(async (options: import('./commands/worker.js').WorkerRunOptions) => {
      const { workerRunCommand } = await import('./commands/worker.js');
      process.exitCode = await workerRunCommand(options);
    });
  const databaseOption = 'the Postgres database of a server run with `strata serve --database` (also $STRATA_DATABASE_URL); default the store\'s SQLite file';
  worker
    .command('add <name>')
    .description('Add a worker; prints its token (shown only once), for `strata worker --token`.')
    .option('--store <dir>', 'state directory (default $STRATA_STORE or /var/lib/strata)')
    .option('--database <url>', databaseOption)
    .action(async (name: string, options: import('./commands/user.js').DatabaseOptions) => {
      const { workerAddCommand } = await import('./commands/worker.js');
      process.exitCode = await workerAddCommand(name, options);
    });
  worker
    .command('revoke <name>')
    .description("Revoke a worker's token: the server refuses it from then on.")
    .option('--store <dir>', 'state directory (default $STRATA_STORE or /var/lib/strata)')
    .option('--database <url>', databaseOption)
    .action(async (name: string, options: import('./commands/user.js').DatabaseOptions) => {
      const { workerRevokeCommand } = await import('./commands/worker.js');
      process.exitCode = await workerRevokeCommand(name, options);
    });
  worker
    .command('list')
    .description('List the workers: revoked, never seen, or when last seen.')
    .option('--store <dir>', 'state directory (default $STRATA_STORE or /var/lib/strata)')
    .option('--database <url>', databaseOption)
    .option('--json', 'print JSON')
    .action(async (options: import('./commands/user.js').DatabaseOptions & { json?: boolean }) => {
      const { workerListCommand } = await import('./commands/worker.js');
      process.exitCode = await workerListCommand(options);
    });
  program
    .command('trigger <repo>')
    .description('Ask a running server to build a repository (its default branch, or --branch / --commit).')
    .option('--branch <branch>', 'the branch to build')
    .option('--commit <commit>', 'the commit to build')
    .option('--server <url>', 'the server (default $STRATA_SERVER or http://127.0.0.1:7080)')
    .option('--token <token>', 'API token (default $STRATA_TOKEN)')
    .action(async (repoName: string, options: import('./commands/trigger.js').TriggerOptions) => {
      const { triggerCommand } = await import('./commands/trigger.js');
      process.exitCode = await triggerCommand(repoName, options);
    });
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode;
    if (isStrataError(error)) {
      process.stderr.write(`strata: ${error.message}\n`);
      if (error.hint) process.stderr.write(`  hint: ${error.hint}\n`);
      return EXIT_CODES[error.code] ?? 1;
    }
    // Anything else is a bug in strata: one line for the user, the stack trace only on request.
    process.stderr.write(`strata: internal error: ${error instanceof Error ? error.message : String(error)}\n`);
    if (process.env.STRATA_DEBUG) process.stderr.write(`${error instanceof Error ? error.stack : ''}\n`);
    else process.stderr.write('  hint: this is a bug in strata; run again with STRATA_DEBUG=1 for the stack trace and report it\n');
    return 1;
  }
}
