// docs/bench/buildkit.svg: strata vs BuildKit wall time per edit, one panel per scenario (a grouped,
// horizontal bar chart), drawn from the newest bench/results/*.json holding each scenario's rows.
// `npm run bench -- plot` redraws it; a bench run that measured `buildkit` redraws it too.
// The SVG is written by hand (no plotting dependency): the chart is a handful of rectangles and labels.
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface ResultRow {
  suite: string;
  name: string;
  medianMs: number;
  note?: string;
}

export interface ResultsFile {
  /** The file name, e.g. bench-2026-11-22T17-37-03-430Z.json (names sort by time). */
  file: string;
  rows: ResultRow[];
}

export interface EditBars {
  edit: string;
  strataMs: number;
  buildkitMs: number;
  /** "steps rerun strata 1 / buildkit 3", when the row's note says it. */
  steps?: string;
}

export interface ScenarioBars {
  scenario: string;
  /** The results file the scenario's numbers come from. */
  file: string;
  edits: EditBars[];
}

const BUILDKIT_ROW = /^(\S+) (.+): (strata|buildkit)$/;

/** Per scenario, its edits as measured in the newest file that has the scenario; scenarios in first-seen order. */
export function latestBuildkitScenarios(files: readonly ResultsFile[]): ScenarioBars[] {
  const newestFirst = [...files].sort((a, b) => b.file.localeCompare(a.file));
  const scenarios = new Map<string, ScenarioBars>();
  for (const { file, rows } of newestFirst) {
    const inThisFile = new Map<string, ScenarioBars>();
    for (const row of rows) {
      const match = row.suite === 'buildkit' ? BUILDKIT_ROW.exec(row.name) : null;
      if (!match || scenarios.has(match[1]!)) continue;
      const [, scenario, edit, side] = match as unknown as [string, string, string, 'strata' | 'buildkit'];
      const bars = inThisFile.get(scenario) ?? { scenario, file, edits: [] };
      inThisFile.set(scenario, bars);
      let bar = bars.edits.find((e) => e.edit === edit);
      if (!bar) {
        bar = { edit, strataMs: NaN, buildkitMs: NaN };
        bars.edits.push(bar);
      }
      if (side === 'strata') bar.strataMs = row.medianMs;
      else bar.buildkitMs = row.medianMs;
      const steps = /steps rerun strata \d+ \/ buildkit \d+/.exec(row.note ?? '')?.[0];
      if (steps) bar.steps = steps;
    }
    for (const [scenario, bars] of inThisFile) {
      bars.edits = bars.edits.filter((e) => Number.isFinite(e.strataMs) && Number.isFinite(e.buildkitMs));
      if (bars.edits.length > 0) scenarios.set(scenario, bars);
    }
  }
  // Oldest scenario first (the order the suite runs them in), then the newer ones.
  return [...scenarios.values()].sort((a, b) => a.file.localeCompare(b.file));
}

function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

function seconds(ms: number): string {
  return ms < 1000 ? `${(ms / 1000).toFixed(2)} s` : `${(ms / 1000).toFixed(1)} s`;
}

const COLORS = { strata: '#2f9e44', buildkit: '#1971c2' };

/** The chart: per scenario a panel with its own linear scale, per edit a strata bar above a BuildKit bar. */
export function buildkitSvg(scenarios: readonly ScenarioBars[]): string {
  const width = 820;
  const labelWidth = 240;
  const barArea = 360;
  const barHeight = 11;
  const rowHeight = 2 * barHeight + 14;
  const out: string[] = [];
  let y = 58;
  for (const { scenario, file, edits } of scenarios) {
    const max = Math.max(...edits.flatMap((e) => [e.strataMs, e.buildkitMs]));
    out.push(`<text x="10" y="${y}" font-weight="bold">${escapeXml(scenario)}</text>`);
    out.push(`<text x="${width - 10}" y="${y}" text-anchor="end" fill="#868e96" font-size="10">${escapeXml(basename(file))}</text>`);
    y += 10;
    for (const edit of edits) {
      out.push(`<text x="${labelWidth - 8}" y="${y + barHeight + 4}" text-anchor="end">${escapeXml(edit.edit)}</text>`);
      for (const [i, side] of (['strata', 'buildkit'] as const).entries()) {
        const ms = side === 'strata' ? edit.strataMs : edit.buildkitMs;
        // A bar never vanishes entirely: a 0.1 s no-op next to 40 s stays visible.
        const length = Math.max(1, (ms / max) * barArea);
        const top = y + i * barHeight;
        out.push(`<rect x="${labelWidth}" y="${top}" width="${length.toFixed(1)}" height="${barHeight - 1}" fill="${COLORS[side]}"><title>${escapeXml(`${scenario} ${edit.edit}: ${side} ${seconds(ms)}`)}</title></rect>`);
        out.push(`<text x="${(labelWidth + length + 4).toFixed(1)}" y="${top + barHeight - 2}" font-size="10">${seconds(ms)}</text>`);
      }
      if (edit.steps) out.push(`<text x="${width - 10}" y="${y + barHeight + 4}" text-anchor="end" fill="#495057" font-size="10">${escapeXml(edit.steps.replace('steps rerun ', 'rerun: '))}</text>`);
      y += rowHeight;
    }
    y += 18;
  }
  const height = y;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="10" y="20" font-size="14" font-weight="bold">strata vs Docker BuildKit: wall time per edit (lower is better; each panel has its own scale)</text>`,
    `<rect x="10" y="30" width="12" height="10" fill="${COLORS.strata}"/><text x="26" y="39">strata</text>`,
    `<rect x="80" y="30" width="12" height="10" fill="${COLORS.buildkit}"/><text x="96" y="39">BuildKit</text>`,
    ...out,
    '</svg>',
    '',
  ].join('\n');
}

const benchDir = dirname(fileURLToPath(import.meta.url));

/** Reads bench/results, writes docs/bench/buildkit.svg (by default); returns the SVG's path. */
export async function writeBuildkitPlot(resultsDir = join(benchDir, 'results'), svgPath = join(benchDir, '..', 'docs', 'bench', 'buildkit.svg')): Promise<string> {
  const names = (await readdir(resultsDir)).filter((name) => /^bench-.*\.json$/.test(name));
  const files: ResultsFile[] = [];
  for (const name of names) {
    const parsed = JSON.parse(await readFile(join(resultsDir, name), 'utf8')) as { rows?: ResultRow[] };
    files.push({ file: name, rows: parsed.rows ?? [] });
  }
  const scenarios = latestBuildkitScenarios(files);
  if (scenarios.length === 0) throw new Error(`bench plot: no buildkit rows in ${resultsDir}`);
  await mkdir(dirname(svgPath), { recursive: true });
  await writeFile(svgPath, buildkitSvg(scenarios));
  return svgPath;
}
