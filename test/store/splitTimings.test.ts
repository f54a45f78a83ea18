// strata-split timings in the database: reported timings (newest wins), immutable frozen sets named by
// digest, and their pruning once no chain step names them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openDatabase } from '../../src/store/database.js';
import { createCacheIndex } from '../../src/store/cacheIndex.js';
import { parseTimingsReport } from '../../src/store/splitTimings.js';

test('a timings report: `path seconds` lines, paths with spaces, ./ stripped, junk ignored', () => {
  const text = 'tests/a.sh 1.5\n./tests/b c.sh\t2\n\nno-time\ntests/neg.sh -1\ntests/nan.sh 1e3\n  tests/d.sh 0.25  \r\n';
  assert.deepEqual(parseTimingsReport(text), [
    { path: 'tests/a.sh', seconds: 1.5 },
    { path: 'tests/b c.sh', seconds: 2 },
    { path: 'tests/d.sh', seconds: 0.25 },
  ]);
});

test('timings: newest wins per path; freezing gives one immutable set per content; sets survive while a chain names them', (t) => {
  const db = openDatabase(':memory:');
  t.after(() => db.close());
  const index = createCacheIndex(db);
  const timings = index.splitTimings;
  assert.equal(timings.freeze('/r', 'Layerfile', 1), null, 'nothing reported: no set');

  timings.record('/r', 'Layerfile', [{ path: 'a', seconds: 1 }, { path: 'b', seconds: 2 }, { path: 'a', seconds: 3 }], 10);
  timings.record('/r', 'other/Layerfile', [{ path: 'z', seconds: 9 }], 10);
  const first = timings.freeze('/r', 'Layerfile', 20);
  assert.ok(first);
  assert.equal(timings.content(first), 'a 3\nb 2\n', 'the last report of a path wins; per Layerfile; sorted');
  assert.equal(timings.freeze('/r', 'Layerfile', 30), first, 'the same timings freeze into the same set');

  timings.record('/r', 'Layerfile', [{ path: 'b', seconds: 0.5 }], 40);
  const second = timings.freeze('/r', 'Layerfile', 50);
  assert.ok(second && second !== first);
  assert.equal(timings.content(second), 'a 3\nb 0.5\n');
  assert.equal(timings.content(first), 'a 3\nb 2\n', 'an earlier set is immutable');

  // A SPLIT step names the first set; the second is named by nothing.
  const chain = index.startChain({ repo: '/r', runner: 'main-layerfile', layerfile: 'Layerfile', runId: 'run1', tree: 't' }, 60);
  index.addStep(chain, { index: 0, definitionKey: 'k', snapshot: null, stateId: 's', trace: null, copies: [], repeatable: false, succeeded: true, background: [], splitTimings: first });
  assert.equal(index.candidates('/r', 'main-layerfile', 'k')[0]?.steps[0]?.splitTimings, first, 'the chain step keeps its set');
  assert.equal(timings.pruneUnreferenced(55, 10), 0, 'young sets are kept (a SPLIT about to record its step)');
  assert.equal(timings.pruneUnreferenced(1000, 10), 1);
  assert.equal(timings.content(second), undefined, 'the unnamed set went');
  assert.equal(timings.content(first), 'a 3\nb 2\n', 'the named one stays');
});
