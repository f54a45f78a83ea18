// The corpus: Layerfiles written the way real ones for the hosted product (LayerCI / webapp.io) are
// written (test/fixtures/layerfile-corpus/, our own files in that style: apt-get without -y, sudo,
// docker-compose, MEMORY after RUN, SKIP REMAINING IF with blanks, LABEL status=display, webapp.io
// images, trailing comments, CRLF...). Every one must parse with no error, and together they must form
// a graph without errors (their FROM/WAIT paths are relative to the corpus folder as a repository).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { buildGraph } from '../../src/layerfile/graph.js';
import { parseLayerfile, type Layerfile } from '../../src/layerfile/index.js';

const corpus = new URL('../fixtures/layerfile-corpus/', import.meta.url).pathname;

function findLayerfiles(dir: string): string[] {
  return readdirSync(dir)
    .sort()
    .flatMap((name) => {
      const full = join(dir, name);
      if (statSync(full).isDirectory()) return findLayerfiles(full);
      return name === 'Layerfile' ? [full] : [];
    });
}

test('every corpus Layerfile parses with no error, and the corpus forms a valid graph', async (t) => {
  const files = findLayerfiles(corpus);
  assert.ok(files.length >= 25, `expected at least 25 corpus Layerfiles, found ${files.length}`);
  const layerfiles: Layerfile[] = [];
  for (const file of files) {
    const path = relative(corpus, file);
    await t.test(path, () => {
      const { layerfile, errors } = parseLayerfile(readFileSync(file, 'utf8'), path);
      assert.deepEqual(errors.map((e) => e.format()), []);
      assert.equal(layerfile.instructions[0]?.kind, 'from');
      layerfiles.push(layerfile);
    });
  }
  const graph = buildGraph(layerfiles);
  assert.deepEqual(graph.errors.map((e) => e.format()), []);
});

test('the corpus exercises the forms real Layerfiles use', () => {
  const all = findLayerfiles(corpus).map((file) => parseLayerfile(readFileSync(file, 'utf8'), relative(corpus, file)).layerfile);
  const has = (what: string, predicate: (layerfile: Layerfile) => boolean): void => assert.ok(all.some(predicate), `no corpus Layerfile has ${what}`);
  const kinds = (l: Layerfile) => l.instructions.map((i) => i.kind);
  has('MEMORY after a RUN', (l) => kinds(l).indexOf('memory') > kinds(l).indexOf('run') && kinds(l).includes('run'));
  has('LABEL status=display', (l) => l.instructions.some((i) => i.kind === 'label' && i.entries.some((e) => e.key === 'status' && e.value === 'display')));
  has('SKIP REMAINING IF with blanks around the operator', (l) => l.instructions.some((i) => i.kind === 'skipRemainingIf' && / (=|!=|=~|!=~) /.test(readLine(l, i.range.line))));
  has('a webapp.io image', (l) => l.instructions.some((i) => i.kind === 'from' && i.source.type === 'image' && i.source.name.startsWith('webapp.io/')));
  for (const kind of ['exposeWebsite', 'exposeTcp', 'split', 'cache', 'button', 'checkpoint', 'wait', 'secretEnv', 'buildEnv', 'setupFile', 'clone', 'user', 'workdir', 'env'] as const) {
    has(`a ${kind} line`, (l) => kinds(l).includes(kind));
  }
  has('RUN BACKGROUND', (l) => l.instructions.some((i) => i.kind === 'run' && i.mode === 'background'));
  has('RUN REPEATABLE', (l) => l.instructions.some((i) => i.kind === 'run' && i.mode === 'repeatable'));
});

function readLine(layerfile: Layerfile, line: number): string {
  return readFileSync(join(corpus, layerfile.path), 'utf8').split(/\r?\n/)[line - 1] ?? '';
}
