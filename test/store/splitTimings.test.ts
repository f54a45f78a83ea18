// strata-split timings in the database: reported timings (newest wins), immutable frozen sets named by
// digest, and their pruning once no chain step names them; the stored part runs against every
// implementation (backends.ts: SQLite, Postgres, through a server's worker API).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseTimingsReport } from '../../src/store/splitTimings.js';
import { eachStoreBackend } from './backends.js';

test('a timings report: `path seconds` lines, paths with spaces, ./ stripped, junk ignored', () => {
  const text = 'tests/a.sh 1.5\n./tests/b c.sh\t2\n\nno-time\ntests/neg.sh -1\ntests/nan.sh 1e3\n  tests/d.sh 0.25  \r\n';
  assert.deepEqual(parseTimingsReport(text), [
    { path: 'tests/a.sh', seconds: 1.5 },
    { path: 'tests/b c.sh', seconds: 2 },
    { path: 'tests/d.sh', seconds: 0.25 },
  ]);
});

eachStoreBackend((fresh) => {
  test('timings: newest wins per path; freezing gives one immutable set per content; sets survive while a chain names them', async (t) => {
    const index = (await (await fresh(t)).open()).cacheIndex;
    const timings = index.splitTimings;
    assert.equal(await timings.freeze('/r', 'Layerfile', 1), null, 'nothing reported: no set');

    assert.equal(await timings.record('/r', 'Layerfile', [{ path: 'a', seconds: 1 }, { path: 'b', seconds: 2 }, { path: 'a', seconds: 3 }], 10), 2);
    await timings.record('/r', 'other/Layerfile', [{ path: 'z', seconds: 9 }], 10);
    const first = await timings.freeze('/r', 'Layerfile', 20);
    assert.ok(first);
    assert.equal(await timings.has(first), true);
    assert.equal(await timings.content(first), 'a 3\nb 2\n', 'the last report of a path wins; per Layerfile; sorted');
    assert.equal(await timings.freeze('/r', 'Layerfile', 30), first, 'the same timings freeze into the same set');

    await timings.record('/r', 'Layerfile', [{ path: 'b', seconds: 0.5 }], 40);
    const second = await timings.freeze('/r', 'Layerfile', 50);
    assert.ok(second && second !== first);
    assert.equal(await timings.content(second), 'a 3\nb 0.5\n');
    assert.equal(await timings.content(first), 'a 3\nb 2\n', 'an earlier set is immutable');

    // A SPLIT step names the first set; the second is named by nothing.
    const chain = await index.startChain({ repo: '/r', runner: 'main-layerfile', layerfile: 'Layerfile', runId: 'run1', tree: 't' }, 60);
    await index.addStep(chain, { index: 0, definitionKey: 'k', snapshot: null, stateId: 's', trace: null, copies: [], repeatable: false, succeeded: true, background: [], splitTimings: first });
    assert.equal((await index.candidates('/r', 'main-layerfile', 'k'))[0]?.steps[0]?.splitTimings, first, 'the chain step keeps its set');
    assert.equal(await timings.pruneUnreferenced(55, 10), 0, 'young sets are kept (a SPLIT about to record its step)');
    assert.equal(await timings.pruneUnreferenced(1000, 10), 1);
    assert.equal(await timings.content(second), undefined, 'the unnamed set went');
    assert.equal(await timings.has(second), false);
    assert.equal(await timings.content(first), 'a 3\nb 2\n', 'the named one stays');
  });

  test('timings: a large report is stored whole; timings not reported for 90 days are forgotten', async (t) => {
    const timings = (await (await fresh(t)).open()).cacheIndex.splitTimings;
    const day = 24 * 3600 * 1000;
    await timings.record('/r', 'Layerfile', [{ path: 'old.sh', seconds: 4 }], 0);
    const many = Array.from({ length: 1234 }, (_, i) => ({ path: `tests/t${String(i).padStart(4, '0')}.sh`, seconds: i / 1000 }));
    assert.equal(await timings.record('/r', 'Layerfile', many, 91 * day), 1234);
    const digest = await timings.freeze('/r', 'Layerfile', 91 * day);
    const lines = (await timings.content(digest as string))?.split('\n').filter(Boolean) ?? [];
    assert.equal(lines.length, 1234, 'every path of the report, and not the one last reported 91 days ago');
    assert.equal(lines[1233], 'tests/t1233.sh 1.233');
  });
});
