// The BuildKit plot (bench/plot.ts): which results it draws, and the SVG it draws them as.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildkitSvg, latestBuildkitScenarios, writeBuildkitPlot, type ResultsFile } from '../../bench/plot.js';

const row = (name: string, medianMs: number, note?: string) => ({ suite: 'buildkit', name, medianMs, ...(note ? { note } : {}) });

const older: ResultsFile = {
  file: 'bench-2026-11-22T17-37-03-430Z.json',
  rows: [
    row('seed edit file2: strata', 20_000, 'strata/buildkit 0.50x, steps rerun strata 1 / buildkit 3'),
    row('seed edit file2: buildkit', 40_000, 'strata/buildkit 0.50x, steps rerun strata 1 / buildkit 3'),
    row('ts first build: strata', 7000),
    row('ts first build: buildkit', 9000),
  ],
};
const newer: ResultsFile = {
  file: 'bench-2026-11-23T10-00-00-000Z.json',
  rows: [
    { suite: 'engine', name: 'seed: edit file2', medianMs: 1 },
    row('ts first build: strata', 6000),
    row('ts first build: buildkit', 8000),
    row("monorepo edit api's source: strata", 10_000),
    row("monorepo edit api's source: buildkit", 15_000),
    row('monorepo an edit with one side only: strata', 5),
  ],
};

test('each scenario comes from the newest results file that has it; pairs missing a side are left out', () => {
  const scenarios = latestBuildkitScenarios([newer, older]);
  assert.deepEqual(
    scenarios.map((s) => [s.scenario, s.file, s.edits.map((e) => [e.edit, e.strataMs, e.buildkitMs])]),
    [
      ['seed', older.file, [['edit file2', 20_000, 40_000]]],
      ['ts', newer.file, [['first build', 6000, 8000]]],
      ['monorepo', newer.file, [["edit api's source", 10_000, 15_000]]],
    ],
  );
  assert.equal(scenarios[0]!.edits[0]!.steps, 'steps rerun strata 1 / buildkit 3');
});

test('the SVG scales bars per panel, labels them, and escapes text', () => {
  const svg = buildkitSvg(latestBuildkitScenarios([older, newer]));
  const widths = [...svg.matchAll(/<rect x="240" y="\d+" width="([\d.]+)"[^>]*><title>([^<]*)<\/title>/g)].map((m) => [m[2], Number(m[1])]);
  // The longest bar of each panel is the full width (360); the others are proportional.
  assert.deepEqual(widths, [
    ['seed edit file2: strata 20.0 s', 180],
    ['seed edit file2: buildkit 40.0 s', 360],
    ['ts first build: strata 6.0 s', 270],
    ['ts first build: buildkit 8.0 s', 360],
    ['monorepo edit api&apos;s source: strata 10.0 s', 240],
    ['monorepo edit api&apos;s source: buildkit 15.0 s', 360],
  ]);
  assert.match(svg, /rerun: strata 1 \/ buildkit 3/);
  assert.doesNotMatch(svg, /api's/, 'no raw apostrophe in the XML');
});

test('writeBuildkitPlot reads a results directory and writes the SVG; with no buildkit rows it refuses', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'strata-plot-test-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, older.file), JSON.stringify({ rows: older.rows }));
  await writeFile(join(dir, 'notes.txt'), 'not a results file');
  const svgPath = join(dir, 'out', 'buildkit.svg');
  assert.equal(await writeBuildkitPlot(dir, svgPath), svgPath);
  assert.match(await readFile(svgPath, 'utf8'), /^<svg [^]*seed edit file2: buildkit 40\.0 s[^]*<\/svg>\n$/);

  const empty = await mkdtemp(join(tmpdir(), 'strata-plot-test-'));
  t.after(() => rm(empty, { recursive: true, force: true }));
  await writeFile(join(empty, 'bench-2026-01-01T00-00-00-000Z.json'), JSON.stringify({ rows: [{ suite: 'plan', name: 'x', medianMs: 1 }] }));
  await assert.rejects(writeBuildkitPlot(empty, join(empty, 'x.svg')), /no buildkit rows/);
});
