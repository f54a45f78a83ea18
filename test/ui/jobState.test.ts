// The job page's state machine: a JobDetail kept current by the replayed + live event stream.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { JobDetail, JobEvent, JobSummary } from '../../src/server/api/types.js';
import { applyEvent, defaultRunner, initialJobState, mergeDetail, runnersByLevel, type JobState } from '../../src/ui/jobState.js';

const summary: JobSummary = {
  id: 'j1', repo: 'web', branch: 'main', commit: 'a'.repeat(40), title: 'add file', author: 'dev', trigger: 'manual',
  status: 'NEW', createdAt: 1, startedAt: null, finishedAt: null, durationMs: null, stepsRan: 0, stepsCached: 0, runId: null,
  options: { noCache: false, noCacheDirs: false },
};
const emptyJob: JobDetail = { ...summary, runners: [], message: null };

const runStart: JobEvent = {
  type: 'runStart',
  runId: 'r1',
  runners: [
    { runner: 'main-layerfile', layerfile: 'Layerfile', level: 1, steps: [{ index: 1, line: 2, text: 'COPY . .' }, { index: 2, line: 3, text: 'RUN make' }] },
    { runner: 'web', layerfile: 'web/Layerfile', level: 2, steps: [{ index: 1, line: 2, text: 'BUTTON deploy?' }] },
  ],
};

function replay(state: JobState, events: JobEvent[], firstSeq = 1): JobState {
  return events.reduce((s, event, i) => applyEvent(s, firstSeq + i, event), state);
}

const stream: JobEvent[] = [
  { type: 'job', job: { ...summary, status: 'RUNNING', startedAt: 5 } },
  runStart,
  { type: 'runnerStart', runner: 'main-layerfile', plan: 'fresh' },
  { type: 'stepStatus', runner: 'main-layerfile', step: 1, status: 'cached', reason: 'restored from snapshot s1' },
  { type: 'stepStatus', runner: 'main-layerfile', step: 2, status: 'running' },
  { type: 'output', runner: 'main-layerfile', step: 2, stream: 'stdout', data: 'building\n', timeMs: 10 },
  { type: 'output', runner: 'main-layerfile', step: 2, stream: 'stderr', data: 'warning\n', timeMs: 11 },
  { type: 'stepStatus', runner: 'main-layerfile', step: 2, status: 'done', durationMs: 1200, reason: 'Makefile content changed' },
  { type: 'runnerEnd', runner: 'main-layerfile', status: 'SUCCESS' },
  { type: 'button', runner: 'web', id: 'b1', line: 2, message: 'deploy?', state: 'waiting' },
  { type: 'note', message: 'button approved by admin', timeMs: 20 },
  { type: 'button', runner: 'web', id: 'b1', line: 2, message: 'deploy?', state: 'approved' },
  { type: 'preview', runner: 'web', url: 'http://x/preview/j1/web/', target: 'localhost:8000' },
  { type: 'preview', runner: 'web', url: 'http://x/preview/j1/web/', target: 'localhost:8000' },
];

test('the event stream builds runners, steps, reasons, logs, buttons, previews and notes', () => {
  const state = replay(initialJobState(emptyJob), stream);
  assert.equal(state.job.status, 'RUNNING');
  assert.equal(state.job.runId, 'r1');
  const main = state.job.runners.find((r) => r.runner === 'main-layerfile')!;
  assert.equal(main.status, 'SUCCESS');
  assert.deepEqual(main.steps.map((s) => [s.status, s.durationMs, s.reason]), [
    ['cached', null, 'restored from snapshot s1'],
    ['done', 1200, 'Makefile content changed'],
  ]);
  assert.deepEqual(state.logs['main-layerfile']!.map((c) => [c.stream, c.data]), [['stdout', 'building\n'], ['stderr', 'warning\n']]);
  const web = state.job.runners.find((r) => r.runner === 'web')!;
  assert.deepEqual(web.buttons, [{ id: 'b1', line: 2, message: 'deploy?', state: 'approved' }]);
  assert.equal(web.previews.length, 1, 'a repeated preview event is not listed twice');
  assert.deepEqual(state.notes, [{ message: 'button approved by admin', timeMs: 20 }]);
  assert.equal(state.lastSeq, stream.length);
});

test('replaying the stream over a detail that already has the runners keeps them and does not duplicate', () => {
  const finished = replay(initialJobState(emptyJob), stream);
  const fromDetail = replay(initialJobState(finished.job), stream);
  assert.equal(fromDetail.job.runners.length, 2);
  assert.deepEqual(fromDetail.job.runners, finished.job.runners);
  assert.equal(fromDetail.logs['main-layerfile']!.length, 2);
});

test('an event at or below the last applied sequence number is ignored (a resumed stream)', () => {
  const state = replay(initialJobState(emptyJob), stream);
  const again = applyEvent(state, 3, { type: 'output', runner: 'main-layerfile', step: 2, stream: 'stdout', data: 'dup\n', timeMs: 12 });
  assert.equal(again, state);
});

test('the end event takes the final summary', () => {
  const state = replay(initialJobState(emptyJob), [...stream, { type: 'end', job: { ...summary, status: 'FAILURE', durationMs: 900 } }]);
  assert.equal(state.job.status, 'FAILURE');
  assert.equal(state.job.durationMs, 900);
});

test('runners are grouped by level, and the page opens on the runner that needs attention', () => {
  const state = replay(initialJobState(emptyJob), stream.slice(0, 10));
  assert.deepEqual(runnersByLevel(state.job.runners).map((l) => [l.level, l.runners.map((r) => r.runner)]), [[1, ['main-layerfile']], [2, ['web']]]);
  assert.equal(defaultRunner(state.job.runners), 'web', 'a waiting button comes first');
  const failed = applyEvent(replay(initialJobState(emptyJob), stream.slice(0, 2)), 3, { type: 'runnerEnd', runner: 'web', status: 'FAILURE' });
  assert.equal(defaultRunner(failed.job.runners), 'web');
  assert.equal(defaultRunner([]), null);
});

test('a detail fetched while the job runs adds only what events do not carry; a finished one is taken whole', () => {
  const live = replay(initialJobState(emptyJob), stream.slice(0, 5)); // step 2 of main-layerfile is running
  const older = replay(initialJobState(emptyJob), stream.slice(0, 4)); // the server answered before that event
  const main = older.job.runners[0]!;
  const detail: JobDetail = {
    ...older.job,
    runners: [{ ...main, durationMs: 700, debuggable: true, steps: main.steps.map((s) => ({ ...s, snapshot: s.index === 1 })) }, older.job.runners[1]!],
  };
  const merged = mergeDetail(live, detail).job.runners[0]!;
  assert.equal(merged.steps[1]!.status, 'running', 'the newer streamed status is kept');
  assert.deepEqual(merged.steps.map((s) => s.snapshot), [true, false]);
  assert.equal(merged.durationMs, 700);
  assert.equal(merged.debuggable, true);

  const final: JobDetail = { ...detail, status: 'FAILURE' };
  assert.equal(mergeDetail(live, final).job, final);
});
