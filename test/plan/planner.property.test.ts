// Property test: random chains, traces and changes; a brute-force oracle (plain array scans, written
// straight from the rules) against the indexed planner. The planner must find exactly the oracle's first
// invalid step for every candidate, never reuse a step whose trace intersects a change, and pick the
// deepest restore point.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { analyzeChain } from '../../src/plan/invalidation.js';
import { plan } from '../../src/plan/planner.js';
import type { CachedChain, CopyRecord, PathState, PlanCandidate, PlanStep, SourceChange } from '../../src/plan/types.js';
import type { StepTrace } from '../../src/trace/types.js';
import { snap } from './builders.js';
import { mulberry32 } from '../helpers/random.js';


const REPO_PATHS = ['f', 'g', 'a', 'a/x', 'a/y', 'a/b', 'a/b/z', 'c', 'c/w', 'c/v'];
const SOURCES = ['', '', 'a', 'a/b', 'c', 'f'];
const DESTS = ['/r', '/r', '/r/a', '/s', '/r/c', '/r/f'];

function oracleMap(copy: CopyRecord, path: string): string | null {
  if (copy.source !== '' && path !== copy.source && !path.startsWith(copy.source + '/')) return null;
  const rest = copy.source === '' ? path : path.slice(copy.source.length);
  if (rest === '') return copy.dest;
  return copy.dest + (rest.startsWith('/') ? rest : '/' + rest);
}

const under = (path: string, ancestor: string): boolean => path.startsWith(ancestor + '/');
const dirname = (path: string): string => path.slice(0, path.lastIndexOf('/')) || '/';

function realChange(change: SourceChange): boolean {
  return JSON.stringify(change.before) !== JSON.stringify(change.after);
}
function membershipChange(change: SourceChange): boolean {
  return change.before === null || change.after === null || change.before.type !== change.after.type;
}

/** The oracle: first step of `steps` that `chain` cannot provide, by brute force. */
function oracleFirstInvalid(steps: PlanStep[], chain: CachedChain, changes: SourceChange[]): number {
  const real = changes.filter(realChange);
  const copies: Array<{ step: number; copy: CopyRecord }> = [];
  chain.steps.forEach((cached, step) => {
    if (step < steps.length) for (const copy of cached.copies) copies.push({ step, copy });
  });
  for (let i = 0; i < steps.length; i++) {
    const cached = chain.steps[i];
    if (cached === undefined || cached.definitionKey !== steps[i]?.definitionKey || !cached.succeeded || cached.trace === null) return i;
    const t = cached.trace;
    for (const change of real) {
      for (let c = 0; c < copies.length; c++) {
        const { step: copyStep, copy } = copies[c] as { step: number; copy: CopyRecord };
        const m = oracleMap(copy, change.path);
        if (m === null) continue;
        // COPY-level rules: the copied path itself changes kind, or a later copy of something else overlaps.
        if (copyStep === i && copy.source !== '' && change.path === copy.source && membershipChange(change)) return i;
        for (let d = c + 1; d < copies.length; d++) {
          const later = copies[d] as { step: number; copy: CopyRecord };
          if (later.step !== i) continue;
          const overlaps = m === later.copy.dest || under(m, later.copy.dest) || under(later.copy.dest, m);
          if (overlaps && oracleMap(later.copy, change.path) !== m) return i;
        }
        // A deletion under what an earlier copy of another source, or an earlier step's write, put there:
        // a fresh run shows that again, a re-applied deletion would remove it; the copy step reruns.
        if (copyStep === i && change.after === null) {
          for (let e = 0; e < c; e++) {
            const earlier = copies[e] as { step: number; copy: CopyRecord };
            const overlaps = m === earlier.copy.dest || under(m, earlier.copy.dest) || under(earlier.copy.dest, m);
            if (overlaps && oracleMap(earlier.copy, change.path) !== m) return i;
          }
          for (let j = 0; j < i; j++) {
            if ((chain.steps[j]?.trace?.written ?? []).some((w) => w === m || under(m, w) || under(w, m))) return i;
          }
        }
        if (copyStep > i) continue;
        if (t.read.includes(m) || t.statted.includes(m)) return i;
        if (membershipChange(change) && t.listed.includes(dirname(m))) return i;
        if (change.after !== null && t.absent.some((a) => a === m || under(m, a))) return i;
        const own = cached.copies.some((o) => m === o.dest || under(m, o.dest));
        if (!own && t.written.some((w) => w === m || under(m, w) || (membershipChange(change) && under(w, m)))) return i;
      }
    }
  }
  return steps.length;
}

/** Does step `i`'s trace intersect a change (read/stat/list/absent/write rules only)? */
function traceIntersects(chain: CachedChain, i: number, changes: SourceChange[]): boolean {
  const t = chain.steps[i]?.trace;
  if (!t) return true;
  for (const change of changes.filter(realChange)) {
    for (let j = 0; j <= i; j++) {
      for (const copy of chain.steps[j]?.copies ?? []) {
        const m = oracleMap(copy, change.path);
        if (m === null) continue;
        if (t.read.includes(m) || t.statted.includes(m)) return true;
        if (membershipChange(change) && t.listed.includes(dirname(m))) return true;
        if (change.after !== null && t.absent.some((a) => a === m || under(m, a))) return true;
      }
    }
  }
  return false;
}

function pick<T>(rand: () => number, items: readonly T[]): T {
  return items[Math.floor(rand() * items.length)] as T;
}

function randomState(rand: () => number, path: string): PathState {
  const type = pick(rand, ['file', 'file', 'dir', 'symlink'] as const);
  const content = pick(rand, ['1', '2']);
  return {
    type,
    mode: pick(rand, [0o644, 0o755]),
    size: type === 'dir' ? 0 : content.length,
    contentId: type === 'dir' ? '' : `${path}:${content}`,
  };
}

function randomTrace(rand: () => number, machinePaths: string[]): StepTrace {
  const subset = (p: number): string[] => [...new Set(machinePaths.filter(() => rand() < p))].sort();
  return { read: subset(0.08), listed: subset(0.05), statted: subset(0.05), absent: subset(0.05), written: subset(0.03) };
}

function randomCase(rand: () => number): { steps: PlanStep[]; candidates: PlanCandidate[] } {
  const stepCount = 1 + Math.floor(rand() * 6);
  const steps: PlanStep[] = Array.from({ length: stepCount }, (_, i) => ({
    definitionKey: `k${i}`,
    line: i + 2,
    kind: 'run',
    text: `RUN step ${i}`,
    repeatable: rand() < 0.15,
  }));
  const machinePaths: string[] = [];
  for (const dest of new Set(DESTS)) for (const p of REPO_PATHS) machinePaths.push(`${dest}/${p}`);
  machinePaths.push(...new Set(DESTS));

  const candidates: PlanCandidate[] = [];
  const chainCount = 1 + Math.floor(rand() * 3);
  for (let c = 0; c < chainCount; c++) {
    const length = rand() < 0.8 ? stepCount : Math.floor(rand() * (stepCount + 1));
    const chain: CachedChain = {
      chainId: `chain${c}`,
      sourceTreeId: `tree${c}`,
      complete: length === stepCount,
      steps: Array.from({ length }, (_, i) => ({
        definitionKey: rand() < 0.07 ? `other${i}` : `k${i}`,
        snapshot: rand() < 0.8 ? snap(`chain${c}-s${i}`) : null,
        trace: rand() < 0.04 ? null : randomTrace(rand, machinePaths),
        copies:
          rand() < 0.35
            ? Array.from({ length: 1 + Math.floor(rand() * 2) }, () => ({ source: pick(rand, SOURCES), dest: pick(rand, DESTS) }))
            : [],
        repeatable: steps[i]?.repeatable ?? false,
        succeeded: rand() > 0.04,
      })),
    };
    const changes: SourceChange[] = [];
    for (const path of REPO_PATHS) {
      if (rand() < 0.75) continue;
      const before = rand() < 0.25 ? null : randomState(rand, path);
      const after = rand() < 0.25 ? null : rand() < 0.3 && before ? { ...before, mode: before.mode ^ 0o111 } : randomState(rand, path);
      changes.push({ path, before, after });
    }
    candidates.push({ chain, changes });
  }
  return { steps, candidates };
}

test('property: the indexed planner agrees with a brute-force oracle and never reuses an intersecting step', () => {
  const seed = 20240611;
  const rand = mulberry32(seed);
  const cases = 4000;
  let candidatesChecked = 0;
  let restores = 0;
  let partialRestores = 0;
  for (let n = 0; n < cases; n++) {
    const { steps, candidates } = randomCase(rand);
    const context = (): string => `seed ${seed}, case ${n}: ${JSON.stringify({ steps, candidates })}`;
    // Exact agreement per candidate.
    const oracleFirst = candidates.map((candidate) => oracleFirstInvalid(steps, candidate.chain, candidate.changes));
    candidates.forEach((candidate, index) => {
      candidatesChecked++;
      assert.equal(analyzeChain(steps, candidate.chain, candidate.changes).firstInvalid, oracleFirst[index], context());
    });

    const result = plan({ steps, candidates });
    // The best depth any candidate allows, computed from the oracle.
    const oracleDepth = candidates.map((candidate, index) => {
      const first = oracleFirst[index] as number;
      const previous = candidate.chain.steps[first];
      if (steps[first]?.repeatable && previous?.repeatable && previous.succeeded && previous.trace && previous.snapshot && previous.definitionKey === steps[first]?.definitionKey) {
        return first;
      }
      for (let s = first - 1; s >= 0; s--) if (candidate.chain.steps[s]?.snapshot) return s + 1;
      return -1;
    });
    const best = Math.max(-1, ...oracleDepth);
    if (result.kind === 'fresh') {
      assert.equal(best, -1, `fresh although a restore was possible: ${context()}`);
      continue;
    }
    restores++;
    const chosen = candidates.find((candidate) => candidate.chain.chainId === result.chainId);
    assert.ok(chosen, context());
    const reused = result.firstRerun ?? steps.length;
    if (reused < steps.length) partialRestores++;
    assert.equal(reused, best, `not the deepest restore: ${context()}`);
    // Soundness, stated directly: no reused step's trace intersects the chosen chain's changes.
    for (let step = 0; step < reused; step++) {
      assert.ok(!traceIntersects(chosen.chain, step, chosen.changes), `step ${step} reused although its trace intersects a change: ${context()}`);
    }
    assert.ok(result.afterStep < (oracleFirst[candidates.indexOf(chosen)] as number) || result.repeatableBase !== undefined, context());
    for (const entry of result.reapply) assert.ok(entry.copyStep <= result.afterStep, context());
  }
  console.log(`property: ${cases} random cases, ${candidatesChecked} candidate chains checked against the oracle (${restores} restores, ${partialRestores} partial)`);
  assert.ok(partialRestores > cases / 10, 'the generator should produce many partial restores');
});
