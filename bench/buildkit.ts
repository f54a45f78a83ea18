// Side by side with Docker BuildKit: the same repository, the same sequence of commits, built by strata
// (an engine on a temporary store, runRepository at HEAD) and by `docker build` of the Layerfile
// translated to a Dockerfile (bench/docker/translate.ts), on the same base image (the vm/debian:12 tar
// strata uses, `docker import`ed) and with BuildKit's cache kept across the sequence. Both wall times of
// each commit are taken in the same run, one after the other, and the steps each reran are counted
// (strata: its run summary; BuildKit: `--progress plain`'s CACHED vs executed steps, FROM excluded).
//
// Scenario "seed": the example of MISSION.md (two RUNs sleeping STRATA_BENCH_SLEEP seconds, default 20).
// Scenario "ts": a small TypeScript project (install deps / build / test), edits of a test file, a
// source file and package.json; set STRATA_BENCH_BUILDKIT_TS=0 to leave it out.
// Scenario "monorepo": a base Layerfile and three packages inheriting it (FROM ../../base), each step a
// sleep of STRATA_BENCH_MONOREPO_SLEEP seconds (default 5); edits touch one package at a time, then the
// base. STRATA_BENCH_BUILDKIT_SEED=0 leaves the seed scenario out.
// Needs root, btrfs-progs, runc, the FUSE tracer, and Debian's docker.io (installed with apt-get when
// dockerd is missing). The Docker daemon is private to the run (bench/docker/daemon.ts).
import { appendFileSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { openEngine, type Engine } from '../src/compose/engine.js';
import { runRepository } from '../src/engine/runRepository.js';
import { ensureImageTar } from '../src/images/ensure.js';
import { parseBuildSteps } from './docker/buildOutput.js';
import { ensureDockerInstalled, startDockerDaemon, type DockerDaemon } from './docker/daemon.js';
import { layerfileToDockerfile } from './docker/translate.js';
import { writeTsProjectSources } from './fixtures/ts-project/generate.js';
import type { BenchRow } from './types.js';
import { benchRepo, type BenchRepo } from './util.js';

const baseImage = 'strata-bench/debian:12';
const images = { 'vm/debian:12': baseImage };

/**
 * A git repository (benchRepo) whose last commit holds `files` and what `prepare` writes into the
 * directory; `.dockerignore` keeps `.git` out of Docker's context.
 */
async function gitRepo(files: Record<string, string>, prepare?: (dir: string) => Promise<void>): Promise<BenchRepo> {
  const repo = benchRepo({});
  // Strata copies the commit's tree (no .git); Docker's context must hold the same files. The ignore
  // file is itself ignored by git, so strata never sees it.
  writeFileSync(join(repo.dir, '.dockerignore'), '.git\n.dockerignore\n');
  appendFileSync(join(repo.dir, '.git', 'info', 'exclude'), '.dockerignore\n');
  await prepare?.(repo.dir);
  repo.commit(files);
  return repo;
}

interface Edit {
  name: string;
  changes: Record<string, string>;
}

interface Side {
  engine: Engine;
  daemon: DockerDaemon;
  /** Outside every build context: where the translated Dockerfiles go. */
  workDir: string;
}

/** One `docker build`: a Layerfile translated to a Dockerfile, built with the repo root as context and tagged. */
interface DockerBuild {
  layerfile: string;
  tag: string;
}

/** The Docker side of a scenario: levels of builds, each level built in parallel after the previous one. */
type DockerPlan = DockerBuild[][];

/** A scenario whose repo has one Layerfile at its root: one build. */
function singleBuild(scenario: string): DockerPlan {
  return [[{ layerfile: 'Layerfile', tag: `strata-bench/${scenario}:latest` }]];
}

/** Builds one level's Layerfile; returns its wall time and the steps it ran (FROM excluded). */
async function dockerBuild(scenario: string, edit: string, repo: BenchRepo, build: DockerBuild, plan: DockerPlan, side: Side, buildArgs: string[]): Promise<{ ms: number; ran: number }> {
  // Every earlier build's tag, for `FROM ../base`.
  const layerfileImages = Object.fromEntries(plan.flat().map((b) => [b.layerfile, b.tag]));
  const dockerfile = join(side.workDir, `${scenario}.${build.layerfile.replace(/\//g, '_')}.Dockerfile`);
  // The working tree is the commit just made: translate its Layerfile, build with the repo as the context.
  const text = readFileSync(join(repo.dir, build.layerfile), 'utf8');
  writeFileSync(dockerfile, layerfileToDockerfile(text, { images, file: build.layerfile, layerfileImages }));
  const result = await side.daemon.docker(['build', '--progress', 'plain', ...buildArgs, '-t', build.tag, '-f', dockerfile, repo.dir]);
  // BuildKit writes its progress to stderr.
  const log = result.stderr + result.stdout;
  const where = `bench buildkit: ${scenario} ${edit}: ${build.layerfile}`;
  if (result.exitCode !== 0) throw new Error(`${where}: docker build failed (exit ${result.exitCode}):\n${log.slice(-3000)}`);
  const steps = parseBuildSteps(log);
  if (steps.steps.length === 0) throw new Error(`${where}: no build steps found in docker build's output:\n${log.slice(-2000)}`);
  return { ms: result.ms, ran: steps.ran };
}

/**
 * Runs `edits` in order (the first usually the initial commit, `changes` empty) on `repo`, each built by
 * strata then by BuildKit (`plan`: every Layerfile of the repo), and returns two rows per edit named
 * `<scenario> <edit>: strata|buildkit`.
 */
async function runScenario(scenario: string, repo: BenchRepo, edits: Edit[], side: Side, buildArgs: string[], plan: DockerPlan = singleBuild(scenario)): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const edit of edits) {
    if (Object.keys(edit.changes).length > 0) repo.commit(edit.changes);
    process.stderr.write(`bench buildkit: ${scenario} ${edit.name}: strata...\n`);
    const strataStart = performance.now();
    const result = await runRepository({ repoDir: repo.dir, commit: 'HEAD' }, side.engine.deps);
    const strataMs = performance.now() - strataStart;
    if (result.status !== 'success') throw new Error(`bench buildkit: ${scenario} ${edit.name}: strata run ${result.runId} ended with ${result.status}`);

    process.stderr.write(`bench buildkit: ${scenario} ${edit.name}: docker build...\n`);
    const buildStart = performance.now();
    let buildkitRan = 0;
    for (const level of plan) {
      const builds = await Promise.all(level.map((build) => dockerBuild(scenario, edit.name, repo, build, plan, side, buildArgs)));
      buildkitRan += builds.reduce((n, b) => n + b.ran, 0);
    }
    const buildMs = performance.now() - buildStart;

    const ratio = strataMs / buildMs;
    const note = `strata/buildkit ${ratio.toFixed(ratio < 0.1 ? 3 : 2)}x, steps rerun strata ${result.stepsRan} / buildkit ${buildkitRan}`;
    rows.push({ name: `${scenario} ${edit.name}: strata`, medianMs: strataMs, note });
    rows.push({ name: `${scenario} ${edit.name}: buildkit`, medianMs: buildMs, note });
  }
  return rows;
}

async function seedScenario(sleep: number): Promise<{ repo: BenchRepo; edits: Edit[] }> {
  const layerfile = (extra: string) => `FROM vm/debian:12\nCOPY . .\nRUN sleep ${sleep} && cat file1\nRUN sleep ${sleep} && cat file2${extra}\n`;
  const repo = await gitRepo({ Layerfile: layerfile(''), file1: '1\n', file2: '2\n', other: 'x\n' });
  return {
    repo,
    edits: [
      { name: `first build (2 × sleep ${sleep})`, changes: {} },
      { name: 'edit an unrelated file', changes: { other: 'y\n' } },
      { name: 'edit file2', changes: { file2: '2b\n' } },
      { name: 'edit file1', changes: { file1: '1b\n' } },
      { name: 'edit the last line', changes: { Layerfile: layerfile(' && echo edited') } },
    ],
  };
}

/**
 * Scenario "monorepo" (issue #7, shaped like examples/monorepo): base/Layerfile prepares a machine from
 * shared/, and three packages (api, web, worker) each inherit it (`FROM ../../base`) and build then test
 * their own sources, every step a `sleep` standing for real work, like the seed's. BuildKit builds the
 * base's Dockerfile into an image, then the three packages' Dockerfiles `FROM` that tag, in parallel
 * (strata runs the three children as its parallelism allows). The edits touch one package at a time,
 * then the shared base.
 */
function monorepoScenario(sleep: number): { repo: Promise<BenchRepo>; edits: Edit[]; plan: DockerPlan } {
  const packages = ['api', 'web', 'worker'];
  const files: Record<string, string> = {
    'base/Layerfile': `FROM vm/debian:12\nENV APP_HOME=/srv/app\nCOPY /shared /srv/shared\nRUN sleep ${sleep} && mkdir -p /srv/app && cat /srv/shared/lib.txt > /srv/app/lib.out\n`,
    'shared/lib.txt': 'shared lib v1\n',
  };
  for (const name of packages) {
    files[`packages/${name}/Layerfile`] = [
      'FROM ../../base',
      `WORKDIR /srv/app/${name}`,
      'COPY . .',
      `RUN sleep ${sleep} && cat src/main.txt /srv/app/lib.out > /srv/app/${name}.out`,
      `RUN sleep ${sleep} && cat test/expected.txt && grep -q main /srv/app/${name}.out`,
      '',
    ].join('\n');
    files[`packages/${name}/src/main.txt`] = `${name} main v1\n`;
    files[`packages/${name}/test/expected.txt`] = `${name} expected v1\n`;
    files[`packages/${name}/README.md`] = `# ${name}\n`;
  }
  return {
    repo: gitRepo(files),
    edits: [
      { name: `first build (4 Layerfiles, 7 × sleep ${sleep})`, changes: {} },
      { name: "edit api's source", changes: { 'packages/api/src/main.txt': 'api main v2\n' } },
      { name: "edit web's test file", changes: { 'packages/web/test/expected.txt': 'web expected v2\n' } },
      { name: "edit worker's README", changes: { 'packages/worker/README.md': '# worker, documented\n' } },
      { name: 'edit the shared base', changes: { 'shared/lib.txt': 'shared lib v2\n' } },
    ],
    plan: [
      [{ layerfile: 'base/Layerfile', tag: 'strata-bench/monorepo-base:latest' }],
      packages.map((name) => ({ layerfile: `packages/${name}/Layerfile`, tag: `strata-bench/monorepo-${name}:latest` })),
    ],
  };
}

const fixtureDir = fileURLToPath(new URL('./fixtures/ts-project/', import.meta.url));

/**
 * The host's node binary, npm and CA bundle under toolchain/ (as bench/trace-real.ts does, but through the
 * repo: a Layerfile can only COPY from it). The same Node as the host, no apt round trip; the CA bundle
 * lets npm reach the registry through a TLS-inspecting proxy when the host needs one.
 */
async function writeToolchain(repoDir: string): Promise<void> {
  const npmCli = realpathSync(join(dirname(process.execPath), 'npm')); // .../node_modules/npm/bin/npm-cli.js
  const npmDir = dirname(dirname(npmCli));
  if (!existsSync(join(npmDir, 'package.json'))) throw new Error(`bench buildkit: cannot find npm next to ${process.execPath}`);
  const toolchain = join(repoDir, 'toolchain');
  mkdirSync(join(toolchain, 'bin'), { recursive: true });
  copyFileSync(process.execPath, join(toolchain, 'bin', 'node'));
  cpSync(npmDir, join(toolchain, 'npm'), { recursive: true });
  const hostCaBundle = process.env.NODE_EXTRA_CA_CERTS ?? '/etc/ssl/certs/ca-certificates.crt';
  if (existsSync(hostCaBundle)) copyFileSync(hostCaBundle, join(toolchain, 'ca-certificates.crt'));
  else writeFileSync(join(toolchain, 'ca-certificates.crt'), '');
}

/** A test file of the project, run by `node --test` against the compiled dist/. */
function testFile(extra: string): string {
  return `import { test } from 'node:test';
import assert from 'node:assert/strict';
import { collect, err, ok } from '../dist/util/result.js';

test('collect gathers values or errors', () => {
  assert.deepEqual(collect([ok(1), ok(2)]), ok([1, 2]));
  assert.deepEqual(collect([ok(1), err('x')]), err(['x']));${extra}
});
`;
}

/**
 * Scenario "ts": the fixture TypeScript project (bench/fixtures/ts-project) under app/, with steps
 * install deps / build / test. Docker builds need the registry: `--network host` (strata's machines
 * have outbound network).
 */
async function tsScenario(): Promise<{ repo: BenchRepo; edits: Edit[] }> {
  const layerfile = [
    'FROM vm/debian:12',
    'COPY toolchain /opt/node',
    'ENV PATH=/opt/node/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin NODE_EXTRA_CA_CERTS=/opt/node/ca-certificates.crt npm_config_update_notifier=false',
    'WORKDIR /root/app',
    'COPY app .',
    'RUN node /opt/node/npm/bin/npm-cli.js ci --no-audit --no-fund',
    'RUN node node_modules/typescript/bin/tsc -p .',
    'RUN node --test test/*.test.mjs',
    '',
  ].join('\n');
  const packageJson = readFileSync(join(fixtureDir, 'package.json'), 'utf8');
  const files: Record<string, string> = { Layerfile: layerfile, 'app/test/result.test.mjs': testFile('') };
  for (const file of ['package.json', 'package-lock.json', 'tsconfig.json']) files[`app/${file}`] = readFileSync(join(fixtureDir, file), 'utf8');
  const repo = await gitRepo(files, async (dir) => {
    await writeToolchain(dir);
    await writeTsProjectSources(join(dir, 'app'));
  });
  const model = readFileSync(join(repo.dir, 'app', 'src', 'models', 'model3.ts'), 'utf8');
  const edited = JSON.parse(packageJson) as { scripts: Record<string, string> };
  edited.scripts.test = 'node --test test/';
  return {
    repo,
    edits: [
      { name: 'first build', changes: {} },
      { name: 'edit a test file', changes: { 'app/test/result.test.mjs': testFile("\n  assert.deepEqual(collect([]), ok([]));") } },
      { name: 'edit a source file', changes: { 'app/src/models/model3.ts': `${model}\nexport const model3Revision = 2;\n` } },
      { name: 'edit package.json', changes: { 'app/package.json': `${JSON.stringify(edited, null, 2)}\n` } },
    ],
  };
}

export async function benchBuildkit(): Promise<BenchRow[]> {
  const sleep = Number(process.env.STRATA_BENCH_SLEEP ?? 20);
  if (!Number.isFinite(sleep) || sleep < 0) throw new Error(`bench buildkit: STRATA_BENCH_SLEEP must be a number of seconds, got ${process.env.STRATA_BENCH_SLEEP}`);
  const monorepoSleep = Number(process.env.STRATA_BENCH_MONOREPO_SLEEP ?? 5);
  if (!Number.isFinite(monorepoSleep) || monorepoSleep < 0) throw new Error(`bench buildkit: STRATA_BENCH_MONOREPO_SLEEP must be a number of seconds, got ${process.env.STRATA_BENCH_MONOREPO_SLEEP}`);
  await ensureDockerInstalled((line) => process.stderr.write(`${line}\n`));
  const { tarPath } = await ensureImageTar('vm/debian:12');

  const cleanups: Array<() => Promise<void> | void> = [];
  const rows: BenchRow[] = [];
  let finished = false;
  try {
    const workDir = mkdtempSync(join(tmpdir(), 'strata-bench-bk-'));
    cleanups.push(() => rmSync(workDir, { recursive: true, force: true }));
    const daemon = await startDockerDaemon();
    cleanups.push(() => daemon.stop());
    // Strata's default WORKDIR is /root: image metadata, so BuildKit adds no step for it.
    const imported = await daemon.dockerOrThrow(['import', '--change', 'WORKDIR /root', tarPath, baseImage]);
    rows.push({ name: 'docker import of the vm/debian:12 tar (once)', medianMs: imported.ms });

    const store = mkdtempSync(join(tmpdir(), 'strata-bench-bk-store-'));
    cleanups.push(() => rmSync(store, { recursive: true, force: true }));
    const engine = await openEngine({ store, reporter: {} });
    cleanups.push(() => engine.close());
    const side: Side = { engine, daemon, workDir };

    if (process.env.STRATA_BENCH_BUILDKIT_SEED !== '0') {
      const seed = await seedScenario(sleep);
      cleanups.push(() => seed.repo.remove());
      rows.push(...(await runScenario('seed', seed.repo, seed.edits, side, ['--network', 'none'])));
    }

    if (process.env.STRATA_BENCH_BUILDKIT_TS !== '0') {
      const ts = await tsScenario();
      cleanups.push(() => ts.repo.remove());
      rows.push(...(await runScenario('ts', ts.repo, ts.edits, side, ['--network', 'host'])));
    }

    const monorepo = monorepoScenario(monorepoSleep);
    const monorepoRepo = await monorepo.repo;
    cleanups.push(() => monorepoRepo.remove());
    rows.push(...(await runScenario('monorepo', monorepoRepo, monorepo.edits, side, ['--network', 'none'], monorepo.plan)));
    finished = true;
    return rows;
  } finally {
    // Last in, first out (the engine closes before its store goes); every cleanup runs even if one fails,
    // and a cleanup's error is raised only when it would not hide the bench's own.
    let firstError: unknown;
    for (const cleanup of cleanups.reverse()) {
      try {
        await cleanup();
      } catch (error) {
        firstError ??= error;
      }
    }
    if (firstError !== undefined) {
      if (finished) throw firstError;
      process.stderr.write(`bench buildkit: cleanup also failed: ${firstError instanceof Error ? firstError.message : String(firstError)}\n`);
    }
  }
}

// `node --import tsx bench/buildkit.ts` prints the rows.
if (import.meta.url === `file://${process.argv[1]}`) {
  for (const row of await benchBuildkit()) {
    console.log(`${row.name.padEnd(48)} ${(row.medianMs / 1000).toFixed(2).padStart(8)} s${row.note ? `  ${row.note}` : ''}`);
  }
}
