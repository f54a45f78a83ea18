// What the worker tells the engine about a job (its steps' LAYERCI_* variables), without machines: a job
// claimed from the real queue, turned into the JobFacts startJob gives runRepository, then into the
// environment every step of the run sees.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { baseStepEnv, type JobFacts } from '../../../src/engine/stepEnv.js';
import { createJobQueue } from '../../../src/server/jobs/sqlQueue.js';
import { jobFacts } from '../../../src/server/jobs/worker.js';
import { openDatabase } from '../../../src/store/database.js';
import { temporaryStore } from '../../helpers/store.js';

const repo = { url: 'https://github.com/team/app.git' };

/** The variables a step of a run with these facts sees. */
const stepEnv = (job: JobFacts) => baseStepEnv({ jobId: 'run-1', runnerId: 'main-layerfile', repositoryName: 'app', retryIndex: 1, commit: null, job });

test('a pull request job reaches the engine with its pull request URL; a push job with none', async (t) => {
  const store = await temporaryStore(t);
  const database = await openDatabase(join(store, 'strata.db'));
  t.after(() => database.close());
  const queue = createJobQueue(database);
  const url = 'https://github.com/team/app/pull/12';
  await queue.insert({ repo: 'app', branch: 'feature/search', commit: 'b'.repeat(40), title: 'Add search', author: 'bob', trigger: 'pull_request', pullRequestUrl: url }, 1);
  await queue.insert({ repo: 'app', branch: 'main', commit: 'a'.repeat(40), title: 'Fix', author: 'ann', trigger: 'push' }, 2);

  const pullRequest = await queue.claim(10, 1000, 2);
  assert.ok(pullRequest);
  const facts = jobFacts(pullRequest, repo);
  assert.deepEqual(facts, { jobId: pullRequest.id, branch: 'feature/search', pullRequestUrl: url, remoteUrl: repo.url });
  assert.equal(stepEnv(facts).LAYERCI_PULL_REQUEST, url);

  const push = await queue.claim(11, 1000, 2);
  assert.ok(push);
  assert.equal(jobFacts(push, repo).pullRequestUrl, undefined);
  assert.equal(stepEnv(jobFacts(push, repo)).LAYERCI_PULL_REQUEST, '', 'present and empty, as for any unknown fact');
});
