// `strata check` run as a real process on temp repos and on the bundled example.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const entry = fileURLToPath(new URL('./strata.ts', import.meta.url));

function strata(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolvePromise) => {
    execFile(process.execPath, ['--import', 'tsx', entry, ...args], { cwd: repoRoot }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      resolvePromise({ code, stdout, stderr });
    });
  });
}

async function makeRepo(t: TestContext, files: Record<string, string>): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'strata-check-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  for (const [path, text] of Object.entries(files)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), text);
  }
  return root;
}

const threeLevels = {
  'base/Layerfile': 'FROM vm/debian:12\n# tools\nRUN apt-get install -y curl\nBUTTON go?\n',
  'services/api/Layerfile': 'FROM /base\nCOPY . /app\nRUN make test\n',
  'web/Layerfile': 'FROM ../base/Layerfile\nLABEL display_name=frontend\nRUN npm test\n',
  'e2e/Layerfile': 'FROM vm/debian:12\nWAIT /services/api /web\nRUN ./e2e.sh\n',
};

test('check prints the Layerfiles, the levels with runner ids and steps, exit 0', async (t) => {
  const root = await makeRepo(t, threeLevels);
  const { code, stdout, stderr } = await strata(['check', root]);
  assert.equal(stderr, '');
  assert.equal(code, 0, stdout);
  assert.match(stdout, /^4 Layerfiles in /);
  const level1 = stdout.indexOf('Level 1');
  const level2 = stdout.indexOf('Level 2');
  const level3 = stdout.indexOf('Level 3');
  assert.ok(level1 > 0 && level1 < level2 && level2 < level3, stdout);
  assert.equal(stdout.indexOf('Level 4'), -1);
  const block = (from: number, to: number) => stdout.slice(from, to);
  assert.match(block(level1, level2), /^  base \(base\/Layerfile\)  FROM vm\/debian:12\n    3: RUN apt-get install -y curl\n/m);
  assert.doesNotMatch(stdout, /BUTTON|LABEL|WAIT \/services/, 'only steps are listed');
  assert.match(block(level2, level3), /^  services-api \(services\/api\/Layerfile\)  FROM base\/Layerfile\n    2: COPY \. \/app\n    3: RUN make test\n/m);
  assert.match(block(level2, level3), /^  frontend \(web\/Layerfile\)/m);
  assert.match(block(level3, stdout.length), /^  e2e \(e2e\/Layerfile\)  FROM vm\/debian:12; WAIT services\/api\/Layerfile, web\/Layerfile\n/m);
  assert.match(stdout, /OK: no errors\n$/);
});

test('check --json prints one JSON document', async (t) => {
  const root = await makeRepo(t, threeLevels);
  const { code, stdout } = await strata(['check', root, '--json']);
  assert.equal(code, 0);
  const report = JSON.parse(stdout);
  assert.equal(report.ok, true);
  assert.deepEqual(report.levels.map((l: { runnerIds: string[] }) => l.runnerIds), [['base'], ['services-api', 'frontend'], ['e2e']]);
  const api = report.nodes.find((n: { path: string }) => n.path === 'services/api/Layerfile');
  assert.deepEqual(api.steps.map((s: { line: number; text: string }) => [s.line, s.text]), [[2, 'COPY . /app'], [3, 'RUN make test']]);
  assert.deepEqual(report.errors, []);
});

test('a broken Layerfile: exit 3 and the error with file:line:col', async (t) => {
  const root = await makeRepo(t, {
    'Layerfile': 'FROM vm/debian:12\nRUN true\nRUNN echo hi\n',
    'child/Layerfile': 'FROM vm/debian:12\n\n  WAIT ../nowhere\n',
  });
  const { code, stdout } = await strata(['check', root]);
  assert.equal(code, 3, stdout);
  assert.match(stdout, /^Layerfile:3:1: .*RUNN/m);
  assert.match(stdout, /^child\/Layerfile:3:3: .*nowhere\/Layerfile/m);
  assert.match(stdout, /^2 errors:$/m);

  const json = await strata(['check', root, '--json']);
  assert.equal(json.code, 3);
  const report = JSON.parse(json.stdout);
  assert.equal(report.ok, false);
  assert.deepEqual(report.errors.map((e: { code: string; file: string; line: number; column: number }) => [e.code, e.file, e.line, e.column]), [
    ['STRATA_LAYERFILE_SYNTAX', 'Layerfile', 3, 1],
    ['STRATA_LAYERFILE_GRAPH', 'child/Layerfile', 3, 3],
  ]);
  assert.deepEqual(report.unscheduled, ['child/Layerfile']);
});

test('a directory without Layerfiles is an error; a missing directory is a usage error', async (t) => {
  const root = await makeRepo(t, { 'README.md': 'no Layerfile here\n' });
  const empty = await strata(['check', root]);
  assert.equal(empty.code, 3);
  assert.match(empty.stdout, /no file named Layerfile/);
  const missing = await strata(['check', join(root, 'does-not-exist')]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /cannot read directory/);
});

test('the bundled examples/monorepo checks clean with three levels', async () => {
  const { code, stdout } = await strata(['check', 'examples/monorepo', '--json']);
  assert.equal(code, 0, stdout);
  const report = JSON.parse(stdout);
  assert.deepEqual(report.levels.map((l: { runnerIds: string[] }) => l.runnerIds), [['base'], ['services-api', 'web'], ['e2e']]);
});
