// The repo graph on real trees: Layerfiles written to a temp dir, discovered, parsed, graphed.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { buildGraph, resolveLayerfilePath, type LayerfileGraph } from '../../src/layerfile/graph.js';
import { parseLayerfile } from '../../src/layerfile/index.js';
import { discoverLayerfiles, readLayerfiles } from '../../src/repo/discover.js';

async function makeRepo(t: TestContext, files: Record<string, string>): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'strata-graph-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  for (const [path, text] of Object.entries(files)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), text);
  }
  return root;
}

async function graphOf(t: TestContext, files: Record<string, string>): Promise<LayerfileGraph> {
  const root = await makeRepo(t, files);
  const layerfiles = (await readLayerfiles(root)).map((source) => {
    const parsed = parseLayerfile(source.text, source.path);
    assert.deepEqual(parsed.errors.map((e) => e.format()), [], `fixture ${source.path} must parse`);
    return parsed.layerfile;
  });
  return buildGraph(layerfiles);
}

const node = (graph: LayerfileGraph, path: string) => {
  const found = graph.nodes.find((n) => n.path === path);
  assert.ok(found, `no node ${path}`);
  return found;
};

test('discovery: exact name, sorted, skips .git, node_modules and symlinked dirs', async (t) => {
  const root = await makeRepo(t, {
    'Layerfile': 'FROM vm/debian:12\n',
    'b/Layerfile': 'FROM /\n',
    'a/deep/er/Layerfile': 'FROM /\n',
    'a/layerfile': 'not me: lower case\n',
    'a/Layerfile.bak': 'not me\n',
    '.git/Layerfile': 'not me\n',
    'web/node_modules/pkg/Layerfile': 'not me\n',
  });
  await symlink(join(root, 'b'), join(root, 'link-to-b'));
  assert.deepEqual(await discoverLayerfiles(root), ['Layerfile', 'a/deep/er/Layerfile', 'b/Layerfile']);
  const sources = await readLayerfiles(root);
  assert.equal(sources[2]?.text, 'FROM /\n');
  await assert.rejects(discoverLayerfiles(join(root, 'missing')), { code: 'STRATA_USAGE' });
});

test('an inheritance chain of three levels, with /x, ../x and ../x/Layerfile forms', async (t) => {
  const graph = await graphOf(t, {
    'base/Layerfile': 'FROM vm/debian:12\nRUN echo base\n',
    'services/api/Layerfile': 'FROM /base\nRUN echo api\n',
    'services/web/Layerfile': 'FROM ../../base/Layerfile\nRUN echo web\n',
    'services/api/e2e/Layerfile': 'FROM ..\nRUN echo e2e\n',
  });
  assert.deepEqual(graph.errors, []);
  assert.deepEqual(graph.levels, [
    ['base/Layerfile'],
    ['services/api/Layerfile', 'services/web/Layerfile'],
    ['services/api/e2e/Layerfile'],
  ]);
  assert.deepEqual(node(graph, 'base/Layerfile').parent, { type: 'image', name: 'vm/debian:12' });
  assert.deepEqual(node(graph, 'services/api/Layerfile').parent, { type: 'layerfile', path: 'base/Layerfile' });
  assert.deepEqual(node(graph, 'services/web/Layerfile').parent, { type: 'layerfile', path: 'base/Layerfile' });
  assert.deepEqual(node(graph, 'services/api/e2e/Layerfile').parent, { type: 'layerfile', path: 'services/api/Layerfile' });
});

test('WAIT orders without inheriting: level is 1 + the max over FROM parent and WAITs', async (t) => {
  const graph = await graphOf(t, {
    'base/Layerfile': 'FROM vm/debian:12\n',
    'api/Layerfile': 'FROM ../base\n',
    'web/Layerfile': 'FROM vm/debian:12\n',
    'e2e/Layerfile': 'FROM vm/debian:12\nWAIT ../api /web\nWAIT ../api/Layerfile\n',
  });
  assert.deepEqual(graph.errors, []);
  assert.deepEqual(graph.levels, [['base/Layerfile', 'web/Layerfile'], ['api/Layerfile'], ['e2e/Layerfile']]);
  const e2e = node(graph, 'e2e/Layerfile');
  assert.deepEqual(e2e.parent, { type: 'image', name: 'vm/debian:12' });
  assert.deepEqual(e2e.waits, ['api/Layerfile', 'web/Layerfile']);
  assert.equal(e2e.level, 3);
});

test('a missing parent is an error at the FROM line naming the path it looked for', async (t) => {
  const graph = await graphOf(t, {
    'base/Layerfile': 'FROM vm/debian:12\n',
    'api/Layerfile': '# api\n\nFROM ../bsae\nRUN true\n',
    'web/Layerfile': 'FROM ../api\n',
  });
  assert.equal(graph.errors.length, 1);
  const error = graph.errors[0]!;
  assert.equal(error.code, 'STRATA_LAYERFILE_GRAPH');
  assert.equal(error.file, 'api/Layerfile');
  assert.equal(error.line, 3);
  assert.equal(error.column, 1);
  assert.match(error.format(), /^api\/Layerfile:3:1: .*bsae.*bsae\/Layerfile/);
  // Neither it nor what depends on it can be scheduled.
  assert.equal(node(graph, 'api/Layerfile').level, undefined);
  assert.equal(node(graph, 'web/Layerfile').level, undefined);
  assert.deepEqual(graph.levels, [['base/Layerfile']]);
});

test('a missing WAIT target is an error at the WAIT line', async (t) => {
  const graph = await graphOf(t, { 'Layerfile': 'FROM vm/debian:12\nRUN true\nWAIT /nope\n' });
  assert.equal(graph.errors.length, 1);
  assert.equal(graph.errors[0]!.line, 3);
  assert.match(graph.errors[0]!.message, /nope\/Layerfile/);
});

test('paths escaping the repository are errors', async (t) => {
  const graph = await graphOf(t, {
    'a/Layerfile': 'FROM ../../outside\n',
    'b/Layerfile': 'FROM vm/debian:12\nWAIT /../x\n',
  });
  assert.deepEqual(
    graph.errors.map((e) => [e.file, e.line, /outside the repository/.test(e.message)]),
    [['a/Layerfile', 1, true], ['b/Layerfile', 2, true]],
  );
});

test('cycles through FROM and WAIT are reported once, listing the cycle', async (t) => {
  const graph = await graphOf(t, {
    'a/Layerfile': 'FROM ../c\n',
    'b/Layerfile': 'FROM ../a\n',
    'c/Layerfile': 'FROM vm/debian:12\nWAIT ../b\n',
    'd/Layerfile': 'FROM ../a\n',
    'self/Layerfile': 'FROM vm/debian:12\nWAIT .\n',
    'ok/Layerfile': 'FROM vm/debian:12\n',
  });
  assert.deepEqual(
    graph.errors.map((e) => `${e.file}:${e.line}: ${e.message}`),
    [
      'a/Layerfile:1: dependency cycle: a/Layerfile -> c/Layerfile -> b/Layerfile -> a/Layerfile',
      'self/Layerfile:2: dependency cycle: self/Layerfile -> self/Layerfile',
    ],
  );
  for (const path of ['a/Layerfile', 'b/Layerfile', 'c/Layerfile', 'd/Layerfile', 'self/Layerfile']) {
    assert.equal(node(graph, path).level, undefined, path);
  }
  assert.deepEqual(graph.levels, [['ok/Layerfile']]);
});

test('runner ids: LABEL display_name, else two parent dirs, else main-layerfile; collisions made unique', async (t) => {
  const graph = await graphOf(t, {
    'Layerfile': 'FROM vm/debian:12\n',
    'api/Layerfile': 'FROM vm/debian:12\n',
    'services/api/Layerfile': 'FROM vm/debian:12\n',
    'a/b/c/Layerfile': 'FROM vm/debian:12\n',
    'x/b/c/Layerfile': 'FROM vm/debian:12\n',
    'y/b/c/Layerfile': 'FROM vm/debian:12\n',
    'b-c-2/Layerfile': 'FROM vm/debian:12\n',
    'z-labelled/Layerfile': 'FROM vm/debian:12\nLABEL display_name=services-api\n',
  });
  assert.deepEqual(graph.errors, []);
  const ids = Object.fromEntries(graph.nodes.map((n) => [n.path, n.runnerId]));
  assert.deepEqual(ids, {
    'Layerfile': 'main-layerfile',
    'a/b/c/Layerfile': 'b-c',
    'api/Layerfile': 'api',
    // A natural id `b-c-2` is kept by its owner; the colliding ones skip it.
    'b-c-2/Layerfile': 'b-c-2',
    // An explicit display name keeps its id even though its path sorts later.
    'services/api/Layerfile': 'services-api-2',
    'x/b/c/Layerfile': 'b-c-3',
    'y/b/c/Layerfile': 'b-c-4',
    'z-labelled/Layerfile': 'services-api',
  });
  assert.equal(new Set(Object.values(ids)).size, graph.nodes.length);
  // Deterministic: the input order does not matter.
  const reversed = buildGraph([...graph.nodes].reverse().map((n) => n.layerfile));
  assert.deepEqual(Object.fromEntries(reversed.nodes.map((n) => [n.path, n.runnerId])), ids);
});

test('resolveLayerfilePath forms', () => {
  assert.deepEqual(resolveLayerfilePath('a/b/Layerfile', '../x'), { ok: true, path: 'a/x/Layerfile' });
  assert.deepEqual(resolveLayerfilePath('a/b/Layerfile', '/x'), { ok: true, path: 'x/Layerfile' });
  assert.deepEqual(resolveLayerfilePath('a/b/Layerfile', '/x/'), { ok: true, path: 'x/Layerfile' });
  assert.deepEqual(resolveLayerfilePath('a/b/Layerfile', '../x/Layerfile'), { ok: true, path: 'a/x/Layerfile' });
  assert.deepEqual(resolveLayerfilePath('a/b/Layerfile', 'x'), { ok: true, path: 'a/b/x/Layerfile' });
  assert.deepEqual(resolveLayerfilePath('a/Layerfile', '..'), { ok: true, path: 'Layerfile' });
  assert.deepEqual(resolveLayerfilePath('a/Layerfile', '/'), { ok: true, path: 'Layerfile' });
  assert.equal(resolveLayerfilePath('Layerfile', '../x').ok, false);
  assert.equal(resolveLayerfilePath('a/Layerfile', '/../a').ok, false);
});
