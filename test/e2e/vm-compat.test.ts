// Layerfiles written for the hosted product (LayerCI / webapp.io, whose machines were small Ubuntu VMs)
// run unchanged: apt answers yes, sudo works for root and for a USER, the terminal has colours, the
// documented LAYERCI_* variables are there (and a changing job id reruns nothing), the vendor's
// `webapp.io/node:18` has node and npm, and on a network that inspects TLS (this one) a host with
// trust_host_ca lets npm reach the registry. Every Layerfile is one a user would write: no strata line.
// Images come from the host cache (/var/cache/strata/images) after the first run on a host.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { createGitRepo, createTestEngine, stepId, stepIds } from '../helpers/engine.js';
import { stopAfterTest } from '../helpers/cli.js';
import { requireRoot } from '../helpers/env.js';

/** Points $STRATA_CONFIG at a host config for the engines opened until the test ends. */
async function hostConfig(t: TestContext, config: Record<string, unknown>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'strata-vm-compat-config-'));
  const path = join(dir, 'config.json');
  await writeFile(path, JSON.stringify(config));
  const saved = process.env.STRATA_CONFIG;
  process.env.STRATA_CONFIG = path;
  t.after(async () => {
    if (saved === undefined) delete process.env.STRATA_CONFIG;
    else process.env.STRATA_CONFIG = saved;
    await rm(dir, { recursive: true, force: true });
  });
  return path;
}

test('apt without -y, sudo as root and as a USER, and tput colours work in vm/debian:12', { timeout: 10 * 60_000 }, async (t) => {
  if (!requireRoot(t)) return;
  await hostConfig(t, {});
  const engine = await createTestEngine(t);
  const repo = createGitRepo(t, {
    Layerfile: `FROM vm/debian:12
RUN apt-get update -q >/dev/null && apt-get install -q jq
RUN echo '{"answer": 42}' | jq .answer
RUN sudo apt-get install -q file >/dev/null && sudo whoami
USER builder
RUN echo "$(whoami) $(sudo whoami) $(sudo -n id -u)"
RUN test "$(tput colors)" -ge 256 && tput setaf 1 | od -An -c && echo "TERM=$TERM"
`,
  });
  const run = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  const output = (step: number) => run.output.get(stepId(step)) ?? '';
  assert.equal(run.result.status, 'success', [...run.output.values()].join('\n'));
  assert.match(output(0), /Setting up jq/);
  assert.equal(output(1).trim(), '42');
  assert.match(output(2), /^root$/m);
  assert.match(output(4), /^builder root 0$/m);
  assert.match(output(5), /033\s+\[\s+3\s+1\s+m/, 'tput setaf 1 prints the ANSI red escape');
  assert.match(output(5), /^TERM=xterm-256color$/m);
});

test('LAYERCI_* variables: present with the run\'s values; a new job id reruns nothing, BUILD ENV LAYERCI_BRANCH keys the branch', { timeout: 10 * 60_000 }, async (t) => {
  if (!requireRoot(t)) return;
  await hostConfig(t, { org_name: 'acme-org' });
  const repo = createGitRepo(t, {
    Layerfile: `FROM vm/debian:12
RUN env | grep -E '^(LAYERCI|SUBDOMAIN|DEPLOYMENT_HOST|EXPOSE_WEBSITE_URL|API_EXTRA|GIT_CLONE_USER)' | sort
RUN echo "cached step ran with $LAYERCI_JOB_ID"
BUILD ENV LAYERCI_BRANCH
RUN echo "branch $LAYERCI_BRANCH"
`,
  });
  repo.git('checkout', '-q', '-b', 'feat/new-dashboard');
  repo.git('remote', 'add', 'origin', 'https://github.com/acme/widgets.git');

  // The CLI: what it knows (remote, branch, the host's org name) becomes the variables.
  const store = await mkdtemp(join(tmpdir(), 'strata-vm-compat-store-'));
  const cli = stopAfterTest(t);
  t.after(() => rm(store, { recursive: true, force: true }));
  const first = await cli.run(['run', '--store', store, '--plain', '--no-expose', repo.dir]);
  assert.equal(first.code, 0, first.stdout + first.stderr);
  const vars = Object.fromEntries([...first.stdout.matchAll(/^\s*(?:\S+\s+)*?((?:LAYERCI|SUBDOMAIN|DEPLOYMENT_HOST|EXPOSE_WEBSITE_URL|API_EXTRA|GIT_CLONE_USER)[A-Z_]*)=(.*)$/gm)].map((m) => [m[1], (m[2] as string).trim()]));
  assert.equal(vars.LAYERCI, 'true');
  assert.equal(vars.LAYERCI_BRANCH, 'feat/new-dashboard');
  assert.equal(vars.SUBDOMAIN, 'new-dashboard');
  assert.equal(vars.LAYERCI_REPO_OWNER, 'acme');
  assert.equal(vars.LAYERCI_REPO_NAME, 'widgets');
  assert.equal(vars.LAYERCI_ORG_NAME, 'acme-org');
  assert.equal(vars.LAYERCI_RUNNER_ID, 'main-layerfile');
  assert.match(vars.LAYERCI_JOB_ID ?? '', /\S/);
  for (const empty of ['LAYERCI_PULL_REQUEST', 'DEPLOYMENT_HOST', 'EXPOSE_WEBSITE_URL', 'API_EXTRA', 'GIT_CLONE_USER']) assert.equal(vars[empty], '', `${empty} is present, empty`);

  // The engine, as the server calls it: another job id reruns nothing; another branch reruns the
  // steps from BUILD ENV LAYERCI_BRANCH on.
  const engine = await createTestEngine(t);
  const job = (jobId: string, branch: string) => ({ repoDir: repo.dir, commit: 'HEAD', job: { jobId, branch, remoteUrl: 'git@github.com:acme/widgets.git' } });
  const run1 = await engine.run(job('job-1', 'main'));
  assert.equal(run1.result.status, 'success');
  assert.match(run1.output.get(stepId(0)) ?? '', /^LAYERCI_JOB_ID=job-1$/m);
  assert.match(run1.output.get(stepId(0)) ?? '', /^LAYERCI_PULL_REQUEST=$/m);
  const run2 = await engine.run(job('job-2', 'main'));
  assert.deepEqual(run2.ran, [], 'a new job id reruns nothing');
  const run3 = await engine.run(job('job-3', 'staging'));
  assert.deepEqual(run3.ran, stepIds(2, 3), 'the branch is keyed from BUILD ENV LAYERCI_BRANCH on');
  assert.equal(run3.output.get(stepId(3))?.trim(), 'branch staging');
});

test('FROM webapp.io/node:18 has node and npm; with trust_host_ca npm reaches the registry through this network', { timeout: 15 * 60_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const layerfile = `FROM webapp.io/node:18
RUN node --version && npm --version
WORKDIR /app
RUN npm view is-number@7.0.0 version && npm init -y >/dev/null && npm install --no-audit --no-fund is-number@7.0.0 && node -e "console.log(require('is-number')(5))"
`;

  await hostConfig(t, { trust_host_ca: true });
  const trusted = await createTestEngine(t);
  const repo = createGitRepo(t, { Layerfile: layerfile });
  const run = await trusted.run({ repoDir: repo.dir, commit: 'HEAD', stepTimeoutMs: 5 * 60_000 });
  assert.equal(run.result.status, 'success', [...run.output.values()].join('\n'));
  // (The first step's output starts with the image's progress lines.)
  assert.match(run.output.get(stepId(0)) ?? '', /^v18\.\d+\.\d+\n10\.\d+\.\d+$/m);
  assert.match(run.output.get(stepId(2)) ?? '', /^7\.0\.0$/m);
  assert.match(run.output.get(stepId(2)) ?? '', /^true$/m);
});

test('without trust_host_ca, npm in a machine fails on this network (bounded by a step timeout)', { timeout: 10 * 60_000 }, async (t) => {
  if (!requireRoot(t)) return;
  await hostConfig(t, { trust_host_ca: false });
  const engine = await createTestEngine(t);
  const repo = createGitRepo(t, { Layerfile: 'FROM webapp.io/node:18\nRUN npm view is-number@7.0.0 version\n' });
  const started = Date.now();
  // npm retries silently for minutes here: a step timeout bounds the test.
  const run = await engine.run({ repoDir: repo.dir, commit: 'HEAD', stepTimeoutMs: 20_000 });
  t.diagnostic(`npm without the host CA gave up after ${Date.now() - started} ms: ${(run.output.get(stepId(0)) ?? '').trim().split('\n').slice(-3).join(' | ')}`);
  assert.notEqual(run.result.status, 'success', 'the inspecting CA is not trusted without trust_host_ca');
});
