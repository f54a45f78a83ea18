// Golden parser tests: every folder under test/fixtures/layerfile/<case>/ holds a Layerfile and the
// instruction list it must parse to (expected.json, `range.file` left out); every folder under
// test/fixtures/layerfile-negative/<case>/ holds a Layerfile and its exact formatted errors
// (expected.txt). `UPDATE_GOLDEN=1` rewrites the expected files: review each one by hand, they are the spec.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseLayerfile } from '../../src/layerfile/index.js';
import type { Instruction } from '../../src/layerfile/index.js';

const fixtures = new URL('../fixtures/', import.meta.url).pathname;
const update = process.env.UPDATE_GOLDEN === '1';

function cases(folder: string): string[] {
  const dir = join(fixtures, folder);
  return readdirSync(dir, { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name)
    .sort();
}

/** The instructions as plain JSON, without `range.file` (which only repeats the fixture's path). */
function normalise(instructions: Instruction[]): unknown {
  return JSON.parse(JSON.stringify(instructions.map(({ range: { file: _file, ...range }, ...rest }) => ({ ...rest, range }))));
}

function checkGolden(path: string, actual: string): void {
  if (update || !existsSync(path)) {
    writeFileSync(path, actual);
    if (!update) assert.fail(`wrote missing golden ${path}; review it and rerun`);
    return;
  }
  const expected = readFileSync(path, 'utf8');
  if (path.endsWith('.json')) assert.deepEqual(JSON.parse(actual), JSON.parse(expected));
  else assert.equal(actual, expected);
}

test('positive fixtures parse to their expected instructions', async (t) => {
  const names = cases('layerfile');
  assert.ok(names.length >= 20, 'the positive fixtures are missing');
  for (const name of names) {
    await t.test(name, () => {
      const dir = join(fixtures, 'layerfile', name);
      const { layerfile, errors } = parseLayerfile(readFileSync(join(dir, 'Layerfile'), 'utf8'), `${name}/Layerfile`);
      assert.deepEqual(errors.map((e) => e.format()), [], 'a positive fixture must parse without errors');
      assert.equal(layerfile.instructions[0]?.kind, 'from');
      checkGolden(join(dir, 'expected.json'), `${JSON.stringify(normalise(layerfile.instructions), null, 2)}\n`);
    });
  }
});

test('negative fixtures report exactly their expected errors', async (t) => {
  const names = cases('layerfile-negative');
  assert.ok(names.length >= 20, 'the negative fixtures are missing');
  for (const name of names) {
    await t.test(name, () => {
      const dir = join(fixtures, 'layerfile-negative', name);
      const { errors } = parseLayerfile(readFileSync(join(dir, 'Layerfile'), 'utf8'), `${name}/Layerfile`);
      assert.ok(errors.length > 0, 'a negative fixture must produce at least one error');
      for (const error of errors) assert.equal(error.code, 'STRATA_LAYERFILE_SYNTAX');
      checkGolden(join(dir, 'expected.txt'), `${errors.map((e) => e.format()).join('\n\n')}\n`);
    });
  }
});
