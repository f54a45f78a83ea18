import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LayerfileError, parseLayerfile, parseSyntax } from '../../src/layerfile/index.js';

test('syntax nodes keep keyword, arguments, their column and the source range', () => {
  const tree = parseSyntax('# c\nFROM vm/debian:12\n  RUN\tBACKGROUND  redis \\\n   --port 1\n', 'L');
  assert.equal(tree.nodes.length, 2);
  const run = tree.nodes[1];
  assert.ok(run);
  assert.equal(run.keyword, 'RUN BACKGROUND');
  assert.equal(run.known, true);
  assert.equal(run.args, 'redis    --port 1');
  assert.equal(run.argsColumn, 19);
  assert.deepEqual(run.range, { file: 'L', line: 3, column: 3, endLine: 4 });
});

test('parseLayerfile collects every error, in source order, and keeps the good instructions', () => {
  const { layerfile, errors } = parseLayerfile('FROM vm/debian:12\nWORKDIR\nRUN ok\nCOPY a\nSPLIT x\n', 'a/Layerfile');
  assert.deepEqual(
    errors.map((e) => [e.line, e.column]),
    [[2, 8], [4, 5], [5, 7]],
  );
  assert.ok(errors.every((e) => e instanceof LayerfileError && e.file === 'a/Layerfile'));
  assert.deepEqual(layerfile.instructions.map((i) => i.kind), ['from', 'run']);
  assert.equal(layerfile.path, 'a/Layerfile');
});

test('canonical text normalises blanks and quotes but keeps the RUN command as written', () => {
  const { layerfile, errors } = parseLayerfile(
    'FROM   vm/debian:12\nMEMORY 2048M\nCOPY  \'a b\'   c   /d/  \nRUN   echo  "x  y"  \\\n  z  \nEXPOSE WEBSITE 8080\n',
    'L',
  );
  assert.deepEqual(errors, []);
  assert.deepEqual(
    layerfile.instructions.map((i) => i.canonical),
    ['FROM vm/debian:12', 'MEMORY 2G', 'COPY "a b" c /d/', 'RUN echo  "x  y"    z', 'EXPOSE WEBSITE http://localhost:8080 /'],
  );
});

test('an edit that changes meaning changes the canonical text; a cosmetic one does not', () => {
  const canonical = (text: string): string[] => parseLayerfile(`FROM vm/debian:12\n${text}\n`, 'L').layerfile.instructions.map((i) => i.canonical);
  assert.deepEqual(canonical('ENV A="x y"'), canonical("ENV   A='x y'"));
  assert.notDeepEqual(canonical('ENV A="$B"'), canonical("ENV A='$B'"));
  assert.notDeepEqual(canonical('ENV A=1 B=2'), canonical('ENV A 1 B=2'));
  assert.notDeepEqual(canonical('RUN echo  a'), canonical('RUN echo a'));
  assert.deepEqual(canonical('RUN echo a   '), canonical('RUN echo a'));
  assert.notDeepEqual(canonical('CLONE u "DEFAULT=x" d'), canonical('CLONE u DEFAULT=x d'));
});

test('parsing odd input never throws', () => {
  const inputs = ['', '\u0000', '\\', '\\\n\\\n', '"', "FROM '", '\ud800', 'FROM vm/debian:12\nENV A=${', '\r\r\r', 'SKIP REMAINING IF A=~(', '\ufeff'];
  for (const input of inputs) {
    const { errors } = parseLayerfile(input, 'L');
    assert.ok(errors.length > 0, JSON.stringify(input));
    for (const error of errors) assert.ok(error instanceof LayerfileError);
  }
});
