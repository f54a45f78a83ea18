// The hosted product's LAYERCI_* variables in every step's base environment: derived from what strata
// knows (remote URL, job, branch), present even when empty, and kept out of definition keys unless
// BUILD ENV names them.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { branchSubdomain, baseStepEnv, repoOwnerAndName, type RunIdentity } from '../../src/engine/stepEnv.js';
import { parseLayerfile } from '../../src/layerfile/index.js';
import { definitionKeys } from '../../src/plan/definitionKey.js';

const commit = { commit: 'a'.repeat(40), tree: 'b'.repeat(40), branch: 'feat/Add_Some-Dashboard.pages', tag: 'v1', title: 'title' } as unknown as RunIdentity['commit'];

test('owner and name come from the remote URL in every common form', () => {
  const cases: Array<[string, string, string]> = [
    ['https://github.com/acme/app.git', 'acme', 'app'],
    ['https://github.com/acme/app', 'acme', 'app'],
    ['git@github.com:acme/app.git', 'acme', 'app'],
    ['ssh://git@gitlab.example:2222/group/sub/app.git', 'group/sub', 'app'],
    ['https://token@gitea.example/acme/app/', 'acme', 'app'],
    ['/srv/git/app.git', '', 'app'],
    ['file:///srv/git/app.git', '', 'app'],
  ];
  for (const [url, owner, name] of cases) assert.deepEqual(repoOwnerAndName(url), { owner, name }, url);
});

test('SUBDOMAIN is the branch cleaned up for a host name', () => {
  assert.equal(branchSubdomain('feat/add-some-dashboard-pages'), 'add-some-dashboard-pages');
  assert.equal(branchSubdomain('main'), 'main');
  assert.equal(branchSubdomain('Fix_Bug#12'), 'fix-bug-12');
  assert.equal(branchSubdomain(''), '');
  assert.equal(branchSubdomain('x'.repeat(80)).length, 63);
});

test('every documented variable is present, from the job when it knows, else empty', () => {
  const identity: RunIdentity = { jobId: 'run-1', runnerId: 'main-layerfile', repositoryName: 'checkout', retryIndex: 1, commit };
  const bare = baseStepEnv(identity);
  const documented = ['LAYERCI', 'LAYERCI_BRANCH', 'LAYERCI_JOB_ID', 'LAYERCI_REPO_NAME', 'LAYERCI_REPO_OWNER', 'LAYERCI_ORG_NAME', 'LAYERCI_RUNNER_ID', 'LAYERCI_PULL_REQUEST', 'SUBDOMAIN', 'DEPLOYMENT_HOST', 'EXPOSE_WEBSITE_URL', 'API_EXTRA', 'GIT_CLONE_USER'];
  for (const name of documented) assert.equal(typeof bare[name], 'string', name);
  assert.equal(bare.LAYERCI, 'true');
  assert.equal(bare.TERM, 'xterm-256color');
  assert.equal(bare.LAYERCI_BRANCH, 'feat/Add_Some-Dashboard.pages');
  assert.equal(bare.SUBDOMAIN, 'add-some-dashboard-pages');
  assert.equal(bare.LAYERCI_JOB_ID, 'run-1');
  assert.equal(bare.LAYERCI_REPO_NAME, 'checkout', 'without a remote: the directory name');
  assert.equal(bare.LAYERCI_REPO_OWNER, '');
  assert.equal(bare.LAYERCI_RUNNER_ID, 'main-layerfile');
  assert.equal(bare.RETRY_INDEX, '1');

  const server = baseStepEnv({ ...identity, job: { jobId: 'job-7', branch: 'staging', remoteUrl: 'git@github.com:acme/app.git', pullRequestUrl: 'https://github.com/acme/app/pull/5' } });
  assert.equal(server.LAYERCI_JOB_ID, 'job-7');
  assert.equal(server.JOB_ID, 'job-7');
  assert.equal(server.LAYERCI_BRANCH, 'staging');
  assert.equal(server.GIT_BRANCH, 'staging');
  assert.equal(server.LAYERCI_REPO_OWNER, 'acme');
  assert.equal(server.LAYERCI_ORG_NAME, 'acme');
  assert.equal(server.LAYERCI_REPO_NAME, 'app');
  assert.equal(server.LAYERCI_PULL_REQUEST, 'https://github.com/acme/app/pull/5');
  assert.equal(baseStepEnv({ ...identity, job: { orgName: 'org' } }).LAYERCI_ORG_NAME, 'org');
});

test('a job id that changes every run changes no definition key; BUILD ENV LAYERCI_BRANCH keys the branch', () => {
  const keysFor = (text: string, job: RunIdentity['job']) => {
    const { layerfile } = parseLayerfile(text, 'Layerfile');
    const env = baseStepEnv({ jobId: 'run', runnerId: 'r', repositoryName: 'x', retryIndex: 1, commit, job });
    return definitionKeys(layerfile.instructions, { parentIdentity: 'image', buildEnv: env, secrets: {} });
  };
  const plain = 'FROM vm/debian:12\nRUN echo $LAYERCI_JOB_ID $LAYERCI_BRANCH\n';
  assert.deepEqual(keysFor(plain, { jobId: '1', branch: 'main' }), keysFor(plain, { jobId: '2', branch: 'dev' }));
  const keyed = 'FROM vm/debian:12\nBUILD ENV LAYERCI_BRANCH\nRUN echo $LAYERCI_BRANCH\n';
  assert.deepEqual(keysFor(keyed, { jobId: '1', branch: 'main' }), keysFor(keyed, { jobId: '2', branch: 'main' }));
  assert.notDeepEqual(keysFor(keyed, { jobId: '1', branch: 'main' }), keysFor(keyed, { jobId: '1', branch: 'dev' }));
});
