// Directive benchmarks with the real engine (root; machines, btrfs snapshots, FUSE tracing, network to
// Debian's archive for Postgres):
// - RUN BACKGROUND: a Layerfile installs Postgres, runs it in the background and migrates; a later step
//   waits until `select 1` works. Editing a file only that later step reads restores the snapshot taken
//   while Postgres ran, re-launches it and reruns the step. Measured: from the moment the restore begins
//   (the snapshot clone) until the query succeeds, with the breakdown of where the time goes, taken from
//   reporter events and from timing wrappers around the engine's ports (EngineDeps).
// - SPLIT 8: from copy 0 finishing its SPLIT step until every copy's first post-split step is running,
//   with the engine's own parallelism (max(8, 2 x cores) by default) and with 2 runners at once (the old default here).
// (CACHE dirs kept vs --no-cache-dirs: bench/cachedirs.ts.)
import { performance } from 'node:perf_hooks';
import type { Engine } from '../src/compose/engine.js';
import type { EngineDeps, EngineMachine } from '../src/engine/ports.js';
import type { Reporter } from '../src/engine/reporter.js';
import { runRepository, type RunResult } from '../src/engine/runRepository.js';
import { postgresMigrate, POSTGRES_BACKGROUND, POSTGRES_INSTALL } from '../test/helpers/postgres.js';
import type { BenchRow } from './types.js';
import { benchRepo, formatShort, median, withEngine } from './util.js';

const ROOT = 'main-layerfile';

function failureOf(result: RunResult): string {
  return [...result.outcomes.values()].map((o) => o.message ?? o.status).join('; ');
}

/** performance.now() of the first occurrence of each mark in one run. */
class Timeline {
  private readonly marks = new Map<string, number>();
  mark(label: string): void {
    if (!this.marks.has(label)) this.marks.set(label, performance.now());
  }
  at(label: string): number {
    const time = this.marks.get(label);
    if (time === undefined) throw new Error(`bench directives: the run never reached "${label}" (marks: ${[...this.marks.keys()].join(', ')})`);
    return time;
  }
  between(from: string, to: string): number {
    return this.at(to) - this.at(from);
  }
}

/**
 * The engine's ports with timing marks around what a restore does: the snapshot clone, the machine
 * start, tracer attach, a background (re-)launch and its exit check.
 */
function instrumented(deps: EngineDeps, timeline: Timeline, reporter: Reporter): EngineDeps {
  const around = async <T>(label: string, work: () => Promise<T>): Promise<T> => {
    timeline.mark(`${label}:start`);
    try {
      return await work();
    } finally {
      timeline.mark(`${label}:end`);
    }
  };
  const snapshots = new Proxy(deps.snapshots, {
    get(target, property) {
      const value = Reflect.get(target, property, target) as unknown;
      if (typeof value !== 'function') return value;
      if (property !== 'clone') return value.bind(target);
      return (...args: unknown[]) => around('clone', () => (value as (...a: unknown[]) => Promise<unknown>).apply(target, args));
    },
  });
  const tracer = new Proxy(deps.tracer, {
    get(target, property) {
      const value = Reflect.get(target, property, target) as unknown;
      if (typeof value !== 'function') return value;
      if (property !== 'attach') return value.bind(target);
      return (...args: unknown[]) => around('tracer attach', () => (value as (...a: unknown[]) => Promise<unknown>).apply(target, args));
    },
  });
  return {
    ...deps,
    reporter,
    snapshots,
    tracer,
    sandbox: {
      async start(request) {
        const machine = await around('machine start', () => deps.sandbox.start(request));
        const timedMachine: EngineMachine = {
          ...machine,
          async startBackground(backgroundRequest) {
            const background = await around('background start', () => machine.startBackground(backgroundRequest));
            return { ...background, exitedWithin: (ms) => around('background check', () => background.exitedWithin(ms)) };
          },
        };
        return timedMachine;
      },
    },
  };
}

/** Steps: #0 install, #1 Postgres in the background, #2 COPY, #3 migrate, #4 COPY later.txt, #5 the query. */
const POSTGRES_LAYERFILE = [
  'FROM vm/debian:12',
  POSTGRES_INSTALL,
  POSTGRES_BACKGROUND,
  'COPY migrate.sql /root/db/migrate.sql',
  postgresMigrate('/root/db/migrate.sql'),
  'COPY later.txt /root/app/later.txt',
  // Polls every 20 ms; each try starts a psql (a few ms), so "works" is seen within ~30 ms of being true.
  `RUN cd / && until runuser -u postgres -- psql -qtA -c 'select count(*) from greetings' >/dev/null 2>&1; do sleep 0.02; done; echo query-ok; cat /root/app/later.txt`,
  '',
].join('\n');

async function benchPostgresRestore(engine: Engine, rounds: number): Promise<BenchRow[]> {
  const repo = benchRepo({
    Layerfile: POSTGRES_LAYERFILE,
    'migrate.sql': "CREATE TABLE greetings (text text);\nINSERT INTO greetings VALUES ('migrated row');\n",
    'later.txt': 'later 0\n',
  });
  try {
    process.stderr.write('bench directives: Postgres first run (installs Postgres from Debian\'s archive)...\n');
    const firstStart = performance.now();
    const first = await runRepository({ repoDir: repo.dir, commit: 'HEAD' }, engine.deps);
    const firstMs = performance.now() - firstStart;
    if (first.status !== 'success' || first.stepsRan !== 6) throw new Error(`bench directives: Postgres first run: ${first.status}, ${first.stepsRan} step(s) ran: ${failureOf(first)}`);

    const samples: Array<Record<string, number>> = [];
    for (let round = 1; round <= rounds; round++) {
      repo.commit({ 'later.txt': `later ${round}\n` });
      const timeline = new Timeline();
      let plan = '';
      const reporter: Reporter = {
        onRunnerStart: (e) => {
          plan = e.plan;
          timeline.mark('planned');
        },
        onStepStatus: (e) => {
          if (e.status === 'running') timeline.mark('step running');
        },
        onStepOutput: (e) => {
          if (e.data.includes('ready to accept connections')) timeline.mark('postgres ready');
          if (e.data.includes('query-ok')) timeline.mark('query works');
        },
      };
      timeline.mark('run start');
      const result = await runRepository({ repoDir: repo.dir, commit: 'HEAD' }, instrumented(engine.deps, timeline, reporter));
      timeline.mark('run end');
      if (result.status !== 'success' || result.stepsRan !== 1 || !/re-launched 1 background process/.test(plan)) {
        throw new Error(`bench directives: Postgres restore ${round}: ${result.status}, ${result.stepsRan} step(s) ran, plan "${plan}": ${failureOf(result)}`);
      }
      samples.push({
        fromRestore: timeline.between('clone:start', 'query works'),
        fromRunStart: timeline.between('run start', 'query works'),
        planning: timeline.between('run start', 'planned'),
        cloneAndReapply: timeline.between('clone:start', 'machine start:start'),
        machineStart: timeline.between('machine start:start', 'machine start:end'),
        tracerAttach: timeline.between('tracer attach:start', 'tracer attach:end'),
        relaunch: timeline.between('background start:start', 'background start:end'),
        relaunchCheck: timeline.between('background check:start', 'background check:end'),
        postgresReady: timeline.between('background start:start', 'postgres ready'),
        readyFromRestore: timeline.between('clone:start', 'postgres ready'),
        stepToQuery: timeline.between('step running', 'query works'),
        wholeRun: timeline.between('run start', 'run end'),
      });
    }
    const m = (key: string) => median(samples.map((s) => s[key]!));
    const part = (name: string, key: string, note?: string): BenchRow => ({ name: `  ${name}`, medianMs: m(key), ...(note ? { note } : {}) });
    return [
      { name: 'Postgres (RUN BACKGROUND) first run: install, start, migrate', medianMs: firstMs, note: '1 run, 6 steps' },
      {
        name: 'Postgres restore until it accepts queries, from the restore\'s start',
        medianMs: m('fromRestore'),
        goalMs: 1000,
        note: `${rounds} runs; whole run ${formatShort(m('wholeRun'))}; from the run's start ${formatShort(m('fromRunStart'))}`,
      },
      part('planning (run start to restore plan)', 'planning'),
      part('snapshot clone + re-apply the changed file', 'cloneAndReapply'),
      part('machine start', 'machineStart'),
      part('tracer attach', 'tracerAttach'),
      part('background re-launch (start the command)', 'relaunch'),
      part('background re-launch exit check (2 s; runs alongside the first steps, ends the run)', 'relaunchCheck'),
      part('Postgres ready (its log line) after its re-launch', 'postgresReady', 'crash recovery of the snapshot included'),
      part('rerun step start until `select` works', 'stepToQuery'),
      {
        name: 'Postgres restore until its log says it accepts connections, from the restore\'s start',
        medianMs: m('readyFromRestore'),
        note: 'what the restore itself costs',
      },
    ];
  } finally {
    repo.remove();
  }
}

/** Steps: #0 COPY, #1 and #2 the shared prefix, #3 SPLIT 8, #4 each copy's `RUN true`. */
const SPLIT_LAYERFILE = 'FROM vm/debian:12\nCOPY . /root/app\nRUN cat /root/app/input.txt > /root/prefix\nRUN echo prefix >> /root/prefix\nSPLIT 8\nRUN true\n';
const SPLIT_STEP = 3;

/** One SPLIT 8 run with --no-cache: ms from copy 0's SPLIT done to each copy's post-split step running. */
async function splitFanOut(engine: Engine, repoDir: string, parallelism: number): Promise<{ all: number; firstCopy: number }> {
  const running = new Map<string, number>();
  let splitDone: number | undefined;
  const reporter: Reporter = {
    onStepStatus: (e) => {
      if (e.runner === ROOT && e.step === SPLIT_STEP && e.status === 'done') splitDone ??= performance.now();
      if (e.step === SPLIT_STEP + 1 && e.status === 'running') running.set(e.runner, performance.now());
    },
  };
  const result = await runRepository({ repoDir, commit: 'HEAD', noCache: true }, { ...engine.deps, reporter, parallelism });
  if (result.status !== 'success') throw new Error(`bench directives: SPLIT 8 run: ${result.status}: ${failureOf(result)}`);
  if (splitDone === undefined || running.size !== 8) throw new Error(`bench directives: SPLIT 8 run: split done ${splitDone}, ${running.size} copies ran their post-split step`);
  const copies = [...running].filter(([runner]) => runner !== ROOT).map(([, at]) => at - splitDone!);
  return { all: Math.max(...running.values()) - splitDone, firstCopy: Math.min(...copies) };
}

async function benchSplit(engine: Engine, rounds: number): Promise<BenchRow[]> {
  const repo = benchRepo({ Layerfile: SPLIT_LAYERFILE, 'input.txt': 'input\n' });
  try {
    const engineDefault = engine.deps.parallelism;
    await splitFanOut(engine, repo.dir, engineDefault); // the image into the store, warm caches: not counted
    const samples = new Map<number, Array<{ all: number; firstCopy: number }>>([[engineDefault, []], [2, []]]);
    for (let round = 0; round < rounds; round++) {
      for (const parallelism of samples.keys()) samples.get(parallelism)!.push(await splitFanOut(engine, repo.dir, parallelism));
    }
    return [...samples].map(([parallelism, runs]) => ({
      name: `SPLIT 8 fan-out until all copies run (${parallelism} runners at once${parallelism === engineDefault ? ', the default' : ''})`,
      medianMs: median(runs.map((r) => r.all)),
      goalMs: 300,
      note: `${rounds} runs; the first restored copy runs after ${formatShort(median(runs.map((r) => r.firstCopy)))}`,
    }));
  } finally {
    repo.remove();
  }
}

export async function benchDirectives(rounds = Number(process.env.STRATA_BENCH_ROUNDS ?? 3)): Promise<BenchRow[]> {
  return withEngine({}, async (engine) => {
    const rows = await benchSplit(engine, rounds);
    rows.push(...(await benchPostgresRestore(engine, rounds)));
    return rows;
  });
}

// `node --import tsx bench/directives.ts` prints the rows.
if (import.meta.url === `file://${process.argv[1]}`) {
  for (const row of await benchDirectives()) console.log(`${row.name.padEnd(70)} ${formatShort(row.medianMs).padStart(9)}${row.note ? `  ${row.note}` : ''}`);
}
