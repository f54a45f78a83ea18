// The differential test of the cache: seeded random repos, Layerfiles (a parent and a `FROM ..` child)
// and commit sequences. After every commit the repo runs incrementally in a long-lived store and from
// scratch in a second store; every step must print the same in both. Steps the incremental run took
// from the cache are compared through the child's last step, which runs on every commit inside the
// restored machine and prints each step's digest file and the copied tree. A wrong cache hit shows up
// as a difference.
//
// Seeds: fixed by default so a failure replays; STRATA_DIFFERENTIAL_SEEDS=7,8,9 explores others.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireRoot } from '../helpers/env.js';
import { createGitRepo, createTestEngine, type TestEngine } from '../helpers/engine.js';
import { Random } from '../helpers/random.js';
import { describeScenario, dumpStep, generateScenario, randomMutations, stepIndex, writeScenario, type Scenario } from './differential/scenario.js';

const COMMITS_PER_SEQUENCE = 4;
const DEFAULT_SEEDS = [3, 5, 9]; // together: symlinks (new, retargeted, dangling), chmod, deletions, new dirs, comment and command edits in both Layerfiles

function seeds(): number[] {
  const given = process.env.STRATA_DIFFERENTIAL_SEEDS;
  if (!given) return DEFAULT_SEEDS;
  return given.split(',').map((s) => Number.parseInt(s.trim(), 10)).filter((n) => Number.isFinite(n));
}

type Run = Awaited<ReturnType<TestEngine['run']>>;

interface Totals {
  sequences: number;
  commits: number;
  /** RUN steps compared by their printed output (ran in both runs). */
  comparedByOutput: number;
  /** RUN steps the incremental run took from the cache, compared through their digest in the restored machine. */
  comparedByDigest: number;
  /** Steps (any kind) the incremental runs reused from the cache. */
  reused: number;
}

/** The section of the state dump that holds the digest file `path`, or null when it is missing. */
function digestSection(dump: string, path: string): string | null {
  const sections = dump.split(/^== /m);
  const section = sections.find((s) => s.startsWith(`${path}\n`));
  return section === undefined ? null : section.slice(section.indexOf('\n') + 1);
}

function assertSuccess(run: Run, what: string): void {
  const messages = [...run.result.outcomes.values()].map((o) => o.message).filter(Boolean);
  assert.equal(run.result.status, 'success', `${what} did not succeed: ${messages.join('; ')}`);
}

test('differential: incremental runs print exactly what from-scratch runs print', { timeout: 900_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const incremental = await createTestEngine(t);
  const scratch = await createTestEngine(t);
  const totals: Totals = { sequences: 0, commits: 0, comparedByOutput: 0, comparedByDigest: 0, reused: 0 };

  for (const seed of seeds()) {
    const random = new Random(seed);
    const scenario: Scenario = generateScenario(random);
    const repo = createGitRepo(t, {});
    writeScenario(repo.dir, scenario);
    repo.commit('scenario');
    totals.sequences++;

    const history: string[] = [];
    for (let commit = 0; commit <= COMMITS_PER_SEQUENCE; commit++) {
      if (commit > 0) {
        const mutations = randomMutations(random, scenario);
        writeScenario(repo.dir, scenario);
        repo.commit(`commit ${commit}`);
        history.push(`commit ${commit}: ${mutations.map((m) => m.description).join(', ')}`);
        totals.commits++;
      }
      const context = (): string => `seed ${seed}, commit ${commit}\n${history.join('\n')}\n${describeScenario(scenario)}`;

      const inc = await incremental.run({ repoDir: repo.dir, commit: 'HEAD' });
      assertSuccess(inc, `incremental run (${context()})`);
      const fresh = await scratch.run({ repoDir: repo.dir, commit: 'HEAD', noCache: true });
      assertSuccess(fresh, `from-scratch run (${context()})`);

      // Parent: COPY (0) and its RUNs (1..n). Child: its RUNs (0..m-1), BUILD ENV GIT_COMMIT, the dump.
      const stepCount = scenario.parent.commands.length + 1 + dumpStep(scenario) + 1;
      const dumpKey = `${scenario.child.runner}#${dumpStep(scenario)}`;
      assert.equal(fresh.ran.length, stepCount, `the from-scratch run executes every step (${context()})`);
      assert.ok(inc.ran.includes(dumpKey), `the state dump runs on every commit (${context()})`);
      totals.reused += inc.result.stepsCached;

      const dumpInc = inc.output.get(dumpKey) ?? '';
      const dumpFresh = fresh.output.get(dumpKey) ?? '';
      for (const model of [scenario.parent, scenario.child]) {
        for (let k = 1; k <= model.commands.length; k++) {
          const key = `${model.runner}#${stepIndex(model, k)}`;
          const expected = fresh.output.get(key) ?? '';
          if (inc.ran.includes(key)) {
            assert.equal(inc.output.get(key) ?? '', expected, `${key} printed something else than from scratch (${context()})`);
            totals.comparedByOutput++;
          } else {
            // Cached: what the step saw when it ran is in its digest file in the restored machine.
            assert.equal(digestSection(dumpInc, `${model.digestPrefix}${k}`), expected, `cached ${key} saw something else than a from-scratch run (${context()})`);
            totals.comparedByDigest++;
          }
        }
      }
      assert.equal(dumpInc, dumpFresh, `the restored machine differs from a from-scratch machine (${context()})`);
    }
  }

  console.log(
    `differential: ${totals.sequences} sequences, ${totals.commits} commits, ` +
      `${totals.comparedByOutput + totals.comparedByDigest} steps compared ` +
      `(${totals.comparedByOutput} by output, ${totals.comparedByDigest} cached ones by digest), ${totals.reused} steps reused from cache`,
  );
  assert.ok(totals.comparedByDigest > 0, 'some RUN steps must come from the cache, or this test proves nothing about it');
});
