import { test } from 'node:test';
import assert from 'node:assert/strict';
import { plan } from '../../src/plan/planner.js';
import type { RestorePlan, SourceChange, StepExplanation } from '../../src/plan/types.js';
import type { StepTrace } from '../../src/trace/types.js';
import {
  added,
  chain,
  deleted,
  dir,
  file,
  modified,
  planSteps,
  snap,
  symlink,
  trace,
  type StepSpec,
} from './builders.js';

// The seed example (MISSION.md): FROM vm/debian:12 (line 1) / COPY . . / RUN cat file1 / RUN cat file2,
// WORKDIR /root, so the repo lands in /root.
function seed(): StepSpec[] {
  return [
    { key: 'k-copy', line: 2, kind: 'copy', text: 'COPY . .', copies: [{ source: '', dest: '/root' }] },
    { key: 'k-cat1', line: 3, text: 'RUN sleep 20 && cat file1', trace: trace({ read: ['/root/file1'] }) },
    { key: 'k-cat2', line: 4, text: 'RUN sleep 20 && cat file2', trace: trace({ read: ['/root/file2'] }) },
  ];
}

function planFor(specs: StepSpec[], changes: SourceChange[], newSpecs: StepSpec[] = specs): RestorePlan {
  return plan({ steps: planSteps(newSpecs), candidates: [{ chain: chain('c1', specs), changes }] });
}

const statuses = (result: RestorePlan): string[] => result.explanations.map((e) => e.status);

function rerunCause(result: RestorePlan, step: number): Extract<StepExplanation, { status: 'rerun' }>['cause'] {
  const explanation = result.explanations[step];
  assert.ok(explanation, `no explanation for step ${step}`);
  assert.equal(explanation.status, 'rerun', `step ${step} should rerun`);
  return explanation.cause;
}

function assertRestore(result: RestorePlan, afterStep: number, firstRerun: number | null): asserts result is Extract<RestorePlan, { kind: 'restore' }> {
  assert.equal(result.kind, 'restore');
  assert.equal(result.afterStep, afterStep, 'afterStep');
  assert.equal(result.firstRerun, firstRerun, 'firstRerun');
}

test('seed: nothing changed -> everything cached, nothing to reapply', () => {
  const result = planFor(seed(), []);
  assertRestore(result, 2, null);
  assert.equal(result.snapshot, snap('c1-s2'));
  assert.deepEqual(result.reapply, []);
  assert.deepEqual(statuses(result), ['cached', 'cached', 'cached']);
  const first = result.explanations[0];
  assert.ok(first?.status === 'cached' && first.snapshot === 'c1-s2' && first.chainId === 'c1');
});

test('seed: an unrelated file edited -> nothing reruns, the file is reapplied', () => {
  const result = planFor(seed(), [modified('README.md')]);
  assertRestore(result, 2, null);
  assert.deepEqual(statuses(result), ['cached', 'cached', 'cached']);
  assert.deepEqual(
    result.reapply.map((r) => [r.source, r.dest, r.copyStep]),
    [['README.md', '/root/README.md', 0]],
  );
});

test('seed: file2 edited -> only the last step reruns', () => {
  const result = planFor(seed(), [modified('file2')]);
  assertRestore(result, 1, 2);
  assert.equal(result.snapshot, snap('c1-s1'));
  assert.deepEqual(statuses(result), ['cached', 'cached', 'rerun']);
  const cause = rerunCause(result, 2);
  assert.equal(cause.kind, 'content-changed');
  assert.equal(cause.path, 'file2');
  assert.equal(cause.machinePath, '/root/file2');
  assert.equal(cause.stepThatObserved, 2);
  assert.equal(cause.message, 'file2 content changed (read by step 3, line 4)');
  assert.deepEqual(result.reapply.map((r) => r.dest), ['/root/file2']);
});

test('seed: file1 edited -> the last two steps rerun', () => {
  const result = planFor(seed(), [modified('file1')]);
  assertRestore(result, 0, 1);
  assert.deepEqual(statuses(result), ['cached', 'rerun', 'rerun']);
  assert.equal(rerunCause(result, 1).kind, 'content-changed');
  const after = rerunCause(result, 2);
  assert.equal(after.kind, 'after-rerun');
  assert.equal(after.stepThatObserved, 1);
});

test('seed: both files edited -> the first invalidated step decides', () => {
  const result = planFor(seed(), [modified('file2'), modified('file1')]);
  assertRestore(result, 0, 1);
  assert.deepEqual(result.reapply.map((r) => r.source), ['file1', 'file2']);
});

test('seed: the Layerfile\'s last line edited -> only the last step reruns', () => {
  const edited = seed();
  edited[2] = { ...(edited[2] as StepSpec), key: 'k-cat2-edited', text: 'RUN sleep 20 && cat file2 file3' };
  const result = planFor(seed(), [], edited);
  assertRestore(result, 1, 2);
  const cause = rerunCause(result, 2);
  assert.equal(cause.kind, 'definition-changed');
  assert.match(cause.message, /^Layerfile changed at step 3 \(line 4/);
});

test('definition key differs at k: earlier trace-valid steps are reused, a change read later does not matter', () => {
  const specs: StepSpec[] = [
    ...seed(),
    { key: 'k-test', line: 5, trace: trace({ read: ['/root/test.sh'] }) },
  ];
  const edited = specs.map((s, i) => (i >= 2 ? { ...s, key: `${s.key}-edited` } : s));
  const result = planFor(specs, [modified('test.sh')], edited);
  assertRestore(result, 1, 2);
  assert.equal(rerunCause(result, 2).kind, 'definition-changed');
  assert.equal(rerunCause(result, 3).kind, 'after-rerun');
});

test('a probed-absent file that now exists invalidates the step that probed it', () => {
  const specs = seed();
  specs[1] = { ...(specs[1] as StepSpec), trace: trace({ read: ['/root/file1'], absent: ['/root/config/local.json'] }) };
  const result = planFor(specs, [added('config', dir()), added('config/local.json')]);
  assertRestore(result, 0, 1);
  const cause = rerunCause(result, 1);
  assert.equal(cause.kind, 'appeared');
  assert.equal(cause.path, 'config/local.json');
  assert.equal(cause.message, 'config/local.json appeared (was probed absent by step 2, line 3)');
});

test('an absent directory: a file added under it invalidates, with or without the directory in the change list', () => {
  const specs = seed();
  specs[2] = { ...(specs[2] as StepSpec), trace: trace({ read: ['/root/file2'], absent: ['/root/config'] }) };
  const withDir = planFor(specs, [added('config', dir()), added('config/local.json')]);
  assertRestore(withDir, 1, 2);
  assert.equal(rerunCause(withDir, 2).path, 'config');
  const fileOnly = planFor(specs, [added('config/local.json')]);
  assertRestore(fileOnly, 1, 2);
  const cause = rerunCause(fileOnly, 2);
  assert.equal(cause.kind, 'appeared');
  assert.equal(cause.path, 'config/local.json');
  assert.match(cause.message, /\/root\/config was probed absent by step 3/);
});

test('an absent file stays absent when only a sibling appears', () => {
  const specs = seed();
  specs[1] = { ...(specs[1] as StepSpec), trace: trace({ absent: ['/root/config/local.json'] }) };
  const result = planFor(specs, [added('config', dir()), added('config/other.json')]);
  assertRestore(result, 2, null);
});

test('a listed directory: an added entry and a removed entry invalidate, an edited entry does not', () => {
  const specs = seed();
  specs[1] = { ...(specs[1] as StepSpec), trace: trace({ listed: ['/root/src'] }) };
  const addition = planFor(specs, [added('src/new.ts')]);
  assertRestore(addition, 0, 1);
  assert.equal(rerunCause(addition, 1).kind, 'listing-changed');
  assert.match(rerunCause(addition, 1).message, /src\/new.ts appeared \(its directory \/root\/src was listed by step 2/);
  const removal = planFor(specs, [deleted('src/old.ts')]);
  assertRestore(removal, 0, 1);
  assert.equal(rerunCause(removal, 1).kind, 'listing-changed');
  const retyped = planFor(specs, [{ path: 'src/x', before: file('a'), after: symlink('a') }]);
  assertRestore(retyped, 0, 1);
  const edit = planFor(specs, [modified('src/a.ts')]);
  assertRestore(edit, 2, null);
  const deeper = planFor(specs, [added('src/lib/deep.ts')]);
  assertRestore(deeper, 2, null);
});

test('a stat\'ed symlink retargeted invalidates', () => {
  const specs = seed();
  specs[2] = { ...(specs[2] as StepSpec), trace: trace({ statted: ['/root/current'] }) };
  const result = planFor(specs, [{ path: 'current', before: symlink('v1'), after: symlink('v2') }]);
  assertRestore(result, 1, 2);
  const cause = rerunCause(result, 2);
  assert.equal(cause.kind, 'content-changed');
  assert.equal(cause.message, "current symlink retargeted (v1 → v2) (stat'ed by step 3, line 4)");
});

test('a stat\'ed path: mode, size and deletion count', () => {
  const specs = seed();
  specs[2] = { ...(specs[2] as StepSpec), trace: trace({ statted: ['/root/data.bin'] }) };
  assertRestore(planFor(specs, [{ path: 'data.bin', before: file('a', 0o100644), after: file('a', 0o100600) }]), 1, 2);
  assertRestore(planFor(specs, [{ path: 'data.bin', before: file('a', 0o100644, 1), after: file('a', 0o100644, 2) }]), 1, 2);
  assertRestore(planFor(specs, [deleted('data.bin')]), 1, 2);
  assertRestore(planFor(specs, [modified('other.bin')]), 2, null);
});

test('chmod +x on a read script (content unchanged) invalidates the step that read it', () => {
  const specs = seed();
  specs[1] = { ...(specs[1] as StepSpec), trace: trace({ read: ['/root/build.sh'] }) };
  const result = planFor(specs, [{ path: 'build.sh', before: file('same', 0o100644), after: file('same', 0o100755) }]);
  assertRestore(result, 0, 1);
  const cause = rerunCause(result, 1);
  assert.equal(cause.kind, 'mode-changed');
  assert.equal(cause.message, 'build.sh mode changed (644 → 755) (read by step 2, line 3)');
});

test('a change with identical before and after is no change', () => {
  const result = planFor(seed(), [{ path: 'file1', before: file('same'), after: file('same') }]);
  assertRestore(result, 2, null);
  assert.deepEqual(result.reapply, []);
});

test('a read file deleted invalidates', () => {
  const result = planFor(seed(), [deleted('file2')]);
  assertRestore(result, 1, 2);
  const cause = rerunCause(result, 2);
  assert.equal(cause.kind, 'deleted');
  assert.equal(cause.message, 'file2 was deleted (read by step 3, line 4)');
  assert.equal(result.reapply[0]?.change.after, null);
});

test('a path written by a step and changed by the commit invalidates that step', () => {
  const specs = seed();
  specs[1] = { ...(specs[1] as StepSpec), trace: trace({ written: ['/root/gen/out.js'] }) };
  const result = planFor(specs, [modified('gen/out.js')]);
  assertRestore(result, 0, 1);
  const cause = rerunCause(result, 1);
  assert.equal(cause.kind, 'wrote-changed');
  assert.equal(cause.path, 'gen/out.js');
});

test('a directory a step removed: a file added under it invalidates (reapply would resurrect it)', () => {
  const specs = seed();
  specs[1] = { ...(specs[1] as StepSpec), trace: trace({ written: ['/root/tests'] }) };
  const result = planFor(specs, [added('tests/b.test.ts')]);
  assertRestore(result, 0, 1);
  assert.equal(rerunCause(result, 1).kind, 'wrote-changed');
});

test('a directory deleted by the commit that holds a file a step wrote invalidates that step', () => {
  const specs = seed();
  specs[2] = { ...(specs[2] as StepSpec), trace: trace({ written: ['/root/build/out.js'] }) };
  const result = planFor(specs, [deleted('build', dir()), deleted('build/README')]);
  assertRestore(result, 1, 2);
  assert.equal(rerunCause(result, 2).kind, 'wrote-changed');
  // A file edited next to the written one does not.
  assertRestore(planFor(specs, [modified('build/README')]), 2, null);
});

test('a step cannot observe files copied after it ran', () => {
  const specs: StepSpec[] = [
    { key: 'k-probe', line: 2, trace: trace({ absent: ['/root/app/x'], listed: ['/root/app'] }) },
    { key: 'k-copy', line: 3, kind: 'copy', copies: [{ source: '', dest: '/root/app' }] },
    { key: 'k-run', line: 4, trace: trace({ read: ['/root/app/y'] }) },
  ];
  const result = planFor(specs, [added('x')]);
  assertRestore(result, 2, null);
  assert.deepEqual(result.reapply.map((r) => [r.dest, r.copyStep]), [['/root/app/x', 1]]);
});

test('copies of subdirectories map paths under their destination only', () => {
  const specs: StepSpec[] = [
    { key: 'k-copy', line: 2, kind: 'copy', copies: [{ source: 'web/src', dest: '/app/src' }, { source: 'web/package.json', dest: '/app/package.json' }] },
    { key: 'k-run', line: 3, trace: trace({ read: ['/app/src/index.ts', '/app/package.json'] }) },
  ];
  assertRestore(planFor(specs, [modified('web/srcx/index.ts'), modified('src/index.ts')]), 1, null);
  const hit = planFor(specs, [modified('web/src/index.ts')]);
  assertRestore(hit, 0, 1);
  assert.equal(rerunCause(hit, 1).machinePath, '/app/src/index.ts');
});

test('a COPY source that disappears invalidates the COPY step itself', () => {
  const specs: StepSpec[] = [
    { key: 'k-base', line: 2 },
    { key: 'k-copy', line: 3, kind: 'copy', copies: [{ source: 'config.json', dest: '/etc/app.json' }] },
    { key: 'k-run', line: 4 },
  ];
  const result = planFor(specs, [deleted('config.json')]);
  assertRestore(result, 0, 1);
  const cause = rerunCause(result, 1);
  assert.equal(cause.kind, 'deleted');
  assert.match(cause.message, /copied by step 2/);
  assert.deepEqual(result.reapply, []);
});

test('a later COPY over the same machine path: a change under it reruns that later COPY', () => {
  const specs: StepSpec[] = [
    { key: 'k-copy-all', line: 2, kind: 'copy', copies: [{ source: '', dest: '/root' }] },
    { key: 'k-copy-prod', line: 3, kind: 'copy', copies: [{ source: 'deploy/prod.json', dest: '/root/config.json' }] },
    { key: 'k-run', line: 4, trace: trace({ read: ['/root/config.json'] }) },
  ];
  // The repo's own config.json is overwritten by step 1: reapplying it after step 1 would undo that copy.
  const result = planFor(specs, [modified('config.json')]);
  assertRestore(result, 0, 1);
  assert.equal(rerunCause(result, 1).kind, 'wrote-changed');
  assert.deepEqual(result.reapply.map((r) => r.dest), ['/root/config.json']);
  // The later copy's own source reaches step 2 through step 1's mapping.
  const prod = planFor(specs, [modified('deploy/prod.json')]);
  assertRestore(prod, 1, 2);
  assert.equal(rerunCause(prod, 2).machinePath, '/root/config.json');
});

test('the same tree copied twice to the same place is not a conflict', () => {
  const specs: StepSpec[] = [
    { key: 'k-pkg', line: 2, kind: 'copy', copies: [{ source: 'package.json', dest: '/app/package.json' }] },
    { key: 'k-install', line: 3, trace: trace({ read: ['/app/package.json'] }) },
    { key: 'k-all', line: 4, kind: 'copy', copies: [{ source: '', dest: '/app' }] },
    { key: 'k-build', line: 5, trace: trace({ read: ['/app/src/a.ts'] }) },
  ];
  const result = planFor(specs, [modified('src/a.ts')]);
  assertRestore(result, 2, 3);
  const pkg = planFor(specs, [modified('package.json')]);
  assertRestore(pkg, 0, 1);
  assert.equal(rerunCause(pkg, 1).kind, 'content-changed');
});

test('a COPY step\'s own writes do not invalidate it', () => {
  const specs = seed();
  specs[0] = { ...(specs[0] as StepSpec), trace: trace({ written: ['/root/file1', '/root/file2'] }) };
  assertRestore(planFor(specs, [modified('file2')]), 1, 2);
});

test('steps without snapshots in the middle: restore the last snapshot before and rerun them', () => {
  const specs: StepSpec[] = [
    { key: 'k-copy', line: 2, kind: 'copy', copies: [{ source: '', dest: '/root' }] },
    { key: 'k-env', line: 3, kind: 'env', snapshot: null },
    { key: 'k-workdir', line: 4, kind: 'workdir', snapshot: null },
    { key: 'k-run', line: 5, trace: trace({ read: ['/root/a'] }) },
    { key: 'k-env2', line: 6, kind: 'env', snapshot: null },
  ];
  const result = planFor(specs, [modified('a')]);
  assertRestore(result, 0, 1);
  assert.deepEqual(
    result.explanations.map((e) => (e.status === 'cached' ? 'cached' : e.cause.kind)),
    ['cached', 'no-snapshot', 'no-snapshot', 'content-changed', 'after-rerun'],
  );
  // All valid: the trailing snapshot-less step replays on top of the last snapshot.
  const clean = planFor(specs, []);
  assertRestore(clean, 3, 4);
  assert.equal(rerunCause(clean, 4).kind, 'no-snapshot');
});

test('no snapshot before the first invalid step -> fresh, explained', () => {
  const specs: StepSpec[] = [
    { key: 'k-env', line: 2, kind: 'env', snapshot: null },
    { key: 'k-copy', line: 3, kind: 'copy', copies: [{ source: '', dest: '/root' }] },
    { key: 'k-run', line: 4, trace: trace({ read: ['/root/a'] }) },
  ];
  const result = planFor(specs, [], specs.map((s) => ({ ...s, key: s.key === 'k-copy' ? 'k-copy2' : s.key })));
  assert.equal(result.kind, 'fresh');
  assert.equal(result.chainId, 'c1');
  assert.deepEqual(
    result.explanations.map((e) => (e.status === 'cached' ? 'cached' : e.cause.kind)),
    ['no-snapshot', 'definition-changed', 'after-rerun'],
  );
});

test('no candidates -> fresh with every step explained as no-cache', () => {
  const result = plan({ steps: planSteps(seed()), candidates: [] });
  assert.equal(result.kind, 'fresh');
  assert.equal(result.chainId, null);
  assert.deepEqual(result.explanations.map((e) => (e.status === 'rerun' ? e.cause.kind : e.status)), ['no-cache', 'no-cache', 'no-cache']);
});

test('several candidates: the deepest restore wins, whatever their order', () => {
  const changed = { chain: chain('a-old', seed()), changes: [modified('file1')] };
  const clean = { chain: chain('b-new', seed()), changes: [modified('README.md')] };
  for (const candidates of [[changed, clean], [clean, changed]]) {
    const result = plan({ steps: planSteps(seed()), candidates });
    assertRestore(result, 2, null);
    assert.equal(result.chainId, 'b-new');
    assert.equal(result.snapshot, snap('b-new-s2'));
  }
});

test('several candidates: ties prefer fewer changes, then the smaller chainId', () => {
  const fewer = { chain: chain('z', seed()), changes: [modified('README.md')] };
  const more = { chain: chain('a', seed()), changes: [modified('README.md'), modified('docs/x.md')] };
  assert.equal((plan({ steps: planSteps(seed()), candidates: [more, fewer] }) as { chainId: string }).chainId, 'z');
  const x = { chain: chain('x', seed()), changes: [modified('README.md')] };
  const y = { chain: chain('y', seed()), changes: [modified('README.md')] };
  assert.equal((plan({ steps: planSteps(seed()), candidates: [y, x] }) as { chainId: string }).chainId, 'x');
  assert.equal((plan({ steps: planSteps(seed()), candidates: [x, y] }) as { chainId: string }).chainId, 'x');
});

test('several candidates: a chain missing a snapshot loses to one that has it', () => {
  const pruned = seed();
  pruned[1] = { ...(pruned[1] as StepSpec), snapshot: null };
  const candidates = [
    { chain: chain('a', pruned), changes: [modified('file2')] },
    { chain: chain('b', seed()), changes: [modified('file2')] },
  ];
  const result = plan({ steps: planSteps(seed()), candidates });
  assertRestore(result, 1, 2);
  assert.equal(result.chainId, 'b');
});

test('RUN REPEATABLE: the first rerun step restarts from its own previous state', () => {
  const specs: StepSpec[] = [
    { key: 'k-copy', line: 2, kind: 'copy', copies: [{ source: '', dest: '/root' }] },
    { key: 'k-up', line: 3, text: 'RUN REPEATABLE docker compose up -d', repeatable: true, trace: trace({ read: ['/root/compose.yml'] }) },
    { key: 'k-test', line: 4, trace: trace({ read: ['/root/test.sh'] }) },
  ];
  const result = planFor(specs, [modified('compose.yml')]);
  assertRestore(result, 1, 1);
  assert.equal(result.snapshot, snap('c1-s1'));
  assert.deepEqual(result.repeatableBase, { step: 1, snapshot: snap('c1-s1') });
  assert.deepEqual(result.reapply.map((r) => r.dest), ['/root/compose.yml']);
  assert.deepEqual(statuses(result), ['cached', 'rerun', 'rerun']);
  assert.match(rerunCause(result, 1).message, /RUN REPEATABLE/);

  // Without a snapshot of its previous run: a plain restore before it.
  const noSnapshot = specs.map((s, i) => (i === 1 ? { ...s, snapshot: null } : s));
  const plain = planFor(noSnapshot, [modified('compose.yml')]);
  assertRestore(plain, 0, 1);
  assert.equal(plain.repeatableBase, undefined);

  // The REPEATABLE line itself edited: a different step, its old state is not reused.
  const edited = specs.map((s, i) => (i >= 1 ? { ...s, key: `${s.key}-edited` } : s));
  const redefined = planFor(specs, [], edited);
  assertRestore(redefined, 0, 1);
  assert.equal(redefined.repeatableBase, undefined);

  // A REPEATABLE step that is still valid is simply cached.
  const cached = planFor(specs, [modified('test.sh')]);
  assertRestore(cached, 1, 2);
  assert.equal(cached.repeatableBase, undefined);
});

test('an incomplete chain provides the snapshots of the steps that succeeded', () => {
  const specs = seed();
  specs[2] = { ...(specs[2] as StepSpec), succeeded: false, snapshot: null };
  const failed = plan({ steps: planSteps(seed()), candidates: [{ chain: chain('c1', specs, false), changes: [] }] });
  assertRestore(failed, 1, 2);
  const cause = rerunCause(failed, 2);
  assert.equal(cause.kind, 'no-cache');
  assert.match(cause.message, /failed in the cached run/);

  // Even if the failed step's machine was snapshotted, it is never reused.
  specs[2] = { ...(specs[2] as StepSpec), succeeded: false, snapshot: 'failed-machine' };
  const snapshotted = plan({ steps: planSteps(seed()), candidates: [{ chain: chain('c1', specs, false), changes: [] }] });
  assertRestore(snapshotted, 1, 2);

  // A run that stopped before the last step (nothing recorded for it).
  const stopped = plan({ steps: planSteps(seed()), candidates: [{ chain: chain('c1', seed().slice(0, 2), false), changes: [] }] });
  assertRestore(stopped, 1, 2);
  assert.match(rerunCause(stopped, 2).message, /stopped before step 3/);
});

test('a step whose trace is missing is treated as invalidated', () => {
  const specs = seed();
  specs[1] = { ...(specs[1] as StepSpec), trace: null };
  const result = planFor(specs, []);
  assertRestore(result, 0, 1);
  assert.equal(rerunCause(result, 1).kind, 'no-cache');
  assert.match(rerunCause(result, 1).message, /no recorded trace/);
});

test('a new run shorter than the cached one reuses the common prefix', () => {
  const result = planFor(seed(), [], seed().slice(0, 2));
  assertRestore(result, 1, null);
  assert.equal(result.explanations.length, 2);
});

test('the explanation of a rerun names the first cause in path order', () => {
  const specs = seed();
  specs[1] = { ...(specs[1] as StepSpec), trace: trace({ read: ['/root/b', '/root/a'] }) };
  const result = planFor(specs, [modified('b'), modified('a')]);
  assert.equal(rerunCause(result, 1).path, 'a');
});

test('trace paths with a stray trailing slash still match', () => {
  const specs = seed();
  const sloppy: StepTrace = { read: [], listed: ['/root/src/'], statted: [], absent: [], written: [] };
  specs[1] = { ...(specs[1] as StepSpec), trace: sloppy };
  assertRestore(planFor(specs, [added('src/new.ts')]), 0, 1);
});

test('trace lists out of order are still searched correctly', () => {
  const specs = seed();
  const unsorted: StepTrace = { read: ['/root/z', '/root/m', '/root/a'], listed: [], statted: [], absent: [], written: [] };
  specs[1] = { ...(specs[1] as StepSpec), trace: unsorted };
  assertRestore(planFor(specs, [modified('a')]), 0, 1);
  assertRestore(planFor(specs, [modified('z')]), 0, 1);
  assertRestore(planFor(specs, [modified('b')]), 2, null);
});

test('nothing changed: the traces are not even looked at', () => {
  // Traces whose lists throw when touched: deciding a no-op push must not depend on their size.
  const untouchable = (): StepTrace => {
    const boom = new Proxy([] as string[], {
      get() {
        throw new Error('trace was scanned');
      },
    });
    return { read: boom, listed: boom, statted: boom, absent: boom, written: boom };
  };
  const specs = seed().map((s) => ({ ...s, trace: untouchable() }));
  const result = planFor(specs, []);
  assertRestore(result, 2, null);
});

// FROM ../base: the parent copied the repo to /app before the child's first step.
test('inherited copies: a child step that read a parent-copied file reruns when it changes', () => {
  const specs: StepSpec[] = [
    { key: 'k-test', line: 2, text: 'RUN cat /app/test.js', trace: trace({ read: ['/app/test.js'] }) },
    { key: 'k-more', line: 3, text: 'RUN echo done' },
  ];
  const inheritedCopies = [{ source: '', dest: '/app' }];
  const result = plan({ steps: planSteps(specs), candidates: [{ chain: chain('c1', specs), changes: [modified('test.js')] }], inheritedCopies });
  assert.equal(result.kind, 'fresh', 'the first step read the changed file: nothing of the chain is reusable');
  assert.equal(rerunCause(result, 0).path, 'test.js');
  assert.equal(rerunCause(result, 0).machinePath, '/app/test.js');
  // Without the inherited mapping the change would be invisible: a wrong cache hit.
  const blind = plan({ steps: planSteps(specs), candidates: [{ chain: chain('c1', specs), changes: [modified('test.js')] }] });
  assert.equal(blind.kind, 'restore');
});

test('inherited copies: unrelated parent-copied changes are re-applied on restore', () => {
  const specs: StepSpec[] = [{ key: 'k-test', line: 2, text: 'RUN cat /app/test.js', trace: trace({ read: ['/app/test.js'] }) }];
  const result = plan({
    steps: planSteps(specs),
    candidates: [{ chain: chain('c1', specs), changes: [modified('README.md')] }],
    inheritedCopies: [{ source: '', dest: '/app' }],
  });
  assertRestore(result, 0, null);
  assert.deepEqual(result.reapply.map((r) => [r.source, r.dest, r.copyStep]), [['README.md', '/app/README.md', -1]]);
});

test('RUN REPEATABLE builds on the most recent previous run, even when an older one has fewer changes', () => {
  const specs: StepSpec[] = [
    { key: 'k-copy', line: 2, kind: 'copy', copies: [{ source: '', dest: '/root' }] },
    { key: 'k-build', line: 3, text: 'RUN REPEATABLE make', repeatable: true, trace: trace({ read: ['/root/counter'] }) },
  ];
  const older = { ...chain('a-older', specs), createdAt: 1 };
  const newer = { ...chain('z-newer', specs), createdAt: 2 };
  const result = plan({
    steps: planSteps(specs),
    candidates: [
      { chain: older, changes: [modified('counter')] },
      { chain: newer, changes: [modified('counter'), modified('README.md')] },
    ],
  });
  assertRestore(result, 1, 1);
  assert.equal(result.chainId, 'z-newer');
  assert.deepEqual(result.repeatableBase, { step: 1, snapshot: snap('z-newer-s1') });
});

test('equally deep plain restores prefer fewer changes, then the newer chain', () => {
  const older = { ...chain('a', seed()), createdAt: 1 };
  const newer = { ...chain('b', seed()), createdAt: 2 };
  const tie = plan({ steps: planSteps(seed()), candidates: [{ chain: older, changes: [modified('x')] }, { chain: newer, changes: [modified('y')] }] });
  assert.equal(tie.kind === 'restore' && tie.chainId, 'b');
  const fewer = plan({ steps: planSteps(seed()), candidates: [{ chain: older, changes: [] }, { chain: newer, changes: [modified('y')] }] });
  assert.equal(fewer.kind === 'restore' && fewer.chainId, 'a');
});

test('a deleted file that replaced one the machine had before the COPY (CopyRecord.shadowed) reruns the COPY; other deletions are re-applied', () => {
  const specs: StepSpec[] = [
    { key: 'k-run', line: 2, text: 'RUN echo x > /root/made.txt', trace: trace({}) },
    { key: 'k-copy', line: 3, kind: 'copy', text: 'COPY . .', copies: [{ source: '', dest: '/root', shadowed: ['.profile', 'conf', 'conf/x', 'made.txt'] }] },
    { key: 'k-cat', line: 4, text: 'RUN cat file1', trace: trace({ read: ['/root/file1'] }) },
  ];
  const shadowing = planFor(specs, [deleted('.profile')]);
  assertRestore(shadowing, 0, 1);
  assert.match(JSON.stringify(rerunCause(shadowing, 1)), /\/root\/\.profile was in the machine before step 2 \(line 3\) copied over it/);
  assertRestore(planFor(specs, [deleted('conf/x'), deleted('conf', dir())]), 0, 1);
  const plain = planFor(specs, [deleted('new.txt')]);
  assertRestore(plain, 2, null);
  assert.deepEqual(plain.reapply.map((r) => [r.source, r.dest]), [['new.txt', '/root/new.txt']]);
  // Modified (not deleted): the new content is written either way.
  assertRestore(planFor(specs, [modified('.profile')]), 2, null);
});
