import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  definitionKeys,
  finalKey,
  imageIdentity,
  isStep,
  layerfileIdentity,
  type DefinitionKeyInputs,
} from '../../src/plan/definitionKey.js';
import type { Instruction } from '../../src/layerfile/types.js';

// Hand-built instructions (the parser is tested on its own); `line` only feeds the source range.
const range = (line: number) => ({ file: 'Layerfile', line, column: 1, endLine: line });
const from = (line: number, name = 'vm/debian:12'): Instruction => ({
  kind: 'from', source: { type: 'image', name }, canonical: `FROM ${name}`, range: range(line),
});
const run = (line: number, command: string): Instruction => ({
  kind: 'run', mode: 'normal', command, canonical: `RUN ${command}`, range: range(line),
});
const copy = (line: number, src: string, dest: string): Instruction => ({
  kind: 'copy', sources: [src], dest, canonical: `COPY ${src} ${dest}`, range: range(line),
});
const env = (line: number, name: string, value: string): Instruction => ({
  kind: 'env', vars: [{ name, value, raw: value }], canonical: `ENV ${name}=${value}`, range: range(line),
});
const buildEnv = (line: number, ...names: string[]): Instruction => ({
  kind: 'buildEnv', names, canonical: `BUILD ENV ${names.join(' ')}`, range: range(line),
});
const secretEnv = (line: number, ...names: string[]): Instruction => ({
  kind: 'secretEnv', names, canonical: `SECRET ENV ${names.join(' ')}`, range: range(line),
});
const memory = (line: number, text: string, bytes: number): Instruction => ({
  kind: 'memory', text, bytes, canonical: `MEMORY ${text}`, range: range(line),
});
const split = (line: number, count: number, unordered = false): Instruction => ({
  kind: 'split', count, unordered, canonical: `SPLIT ${unordered ? 'UNORDERED ' : ''}${count}`, range: range(line),
});
const button = (line: number, message: string): Instruction => ({
  kind: 'button', message, canonical: `BUTTON ${message}`, range: range(line),
});
const label = (line: number, value: string): Instruction => ({
  kind: 'label', entries: [{ key: 'display_name', value }], canonical: `LABEL display_name=${value}`, range: range(line),
});
const wait = (line: number, path: string): Instruction => ({
  kind: 'wait', paths: [path], canonical: `WAIT ${path}`, range: range(line),
});
const skipIf = (line: number): Instruction => ({
  kind: 'skipRemainingIf', conditions: [{ name: 'GIT_BRANCH', op: '!=', value: 'main' }],
  canonical: 'SKIP REMAINING IF GIT_BRANCH!=main', range: range(line),
});
const checkpoint = (line: number, mode: 'force' | 'disabled' | 'named', name?: string): Instruction => ({
  kind: 'checkpoint', mode, name, range: range(line),
  canonical: mode === 'force' ? 'CHECKPOINT' : mode === 'disabled' ? 'CHECKPOINT disabled' : `CHECKPOINT ${name}`,
});
const exposeTcp = (line: number, port: number): Instruction => ({
  kind: 'exposeTcp', port, dest: port, canonical: `EXPOSE TCP :${port}`, range: range(line),
});

const inputs: DefinitionKeyInputs = {
  parentIdentity: imageIdentity('vm/debian:12', 'recipe-1'),
  buildEnv: { GIT_BRANCH: 'main' },
  secrets: { NPM_TOKEN: 's3cret' },
};

const base = (): Instruction[] => [
  from(1),
  copy(2, '.', '.'),
  env(3, 'NODE_ENV', 'test'),
  run(4, 'npm ci'),
  buildEnv(5, 'GIT_BRANCH'),
  run(6, 'npm test'),
  secretEnv(7, 'NPM_TOKEN'),
  run(8, 'npm publish --dry-run'),
];

/** Asserts keys agree before `k` and all differ from `k` on. */
function assertChangesFrom(before: string[], after: string[], k: number): void {
  assert.equal(before.length, after.length);
  for (let i = 0; i < before.length; i++) {
    if (i < k) assert.equal(after[i], before[i], `key ${i} should not change (edit at ${k})`);
    else assert.notEqual(after[i], before[i], `key ${i} should change (edit at ${k})`);
  }
}

test('keys are 64-hex digests, one per instruction, deterministic', () => {
  const keys = definitionKeys(base(), inputs);
  assert.equal(keys.length, base().length);
  for (const key of keys) assert.match(key, /^[0-9a-f]{64}$/);
  assert.deepEqual(definitionKeys(base(), inputs), keys);
  assert.equal(new Set(keys).size, keys.length, 'every step of the base file moves the key');
});

test('an edit at instruction k changes keys from k on and none before', () => {
  const original = definitionKeys(base(), inputs);
  const edits: Array<[number, Instruction]> = [
    [0, from(1, 'vm/ubuntu:24.04')],
    [1, copy(2, 'src', '.')],
    [2, env(3, 'NODE_ENV', 'production')],
    [3, run(4, 'npm install')],
    [4, buildEnv(5, 'GIT_BRANCH', 'GIT_TAG')],
    [5, run(6, 'npm test -- --bail')],
    [6, secretEnv(7, 'NPM_TOKEN', 'OTHER')],
    [7, run(8, 'npm publish')],
  ];
  for (const [k, replacement] of edits) {
    const edited = base();
    edited[k] = replacement;
    assertChangesFrom(original, definitionKeys(edited, inputs), k);
  }
});

test('the source position (a comment or blank line above shifts lines) does not enter the key', () => {
  const shifted = base().map((i) => ({ ...i, range: { ...i.range, line: i.range.line + 3, column: 5 } }));
  assert.deepEqual(definitionKeys(shifted, inputs), definitionKeys(base(), inputs));
});

test('BUTTON, LABEL, WAIT, SKIP REMAINING IF, CHECKPOINT (all forms) and EXPOSE change no key', () => {
  const original = definitionKeys(base(), inputs);
  const neutral = [
    button(0, 'deploy?'), label(0, 'api'), wait(0, '../base'), skipIf(0),
    checkpoint(0, 'named', 'ready'), checkpoint(0, 'disabled'), checkpoint(0, 'force'), exposeTcp(0, 5432),
  ];
  for (const extra of neutral) {
    for (let at = 1; at <= base().length; at++) {
      const edited = base();
      edited.splice(at, 0, extra);
      const keys = definitionKeys(edited, inputs);
      keys.splice(at, 1); // the neutral line's own key (it repeats the previous one)
      assert.deepEqual(keys, original, `${extra.canonical} inserted at ${at}`);
    }
  }
  // Editing a neutral line's text changes nothing either.
  const a = [...base(), button(9, 'ship it?')];
  const b = [...base(), button(9, 'really ship it?')];
  assert.deepEqual(definitionKeys(a, inputs), definitionKeys(b, inputs));
});

test('a BUILD ENV value change moves keys from the BUILD ENV line on; unset differs from empty', () => {
  const original = definitionKeys(base(), inputs);
  const buildEnvAt = 4;
  const otherBranch = definitionKeys(base(), { ...inputs, buildEnv: { GIT_BRANCH: 'feature' } });
  assertChangesFrom(original, otherBranch, buildEnvAt);
  const empty = definitionKeys(base(), { ...inputs, buildEnv: { GIT_BRANCH: '' } });
  const unset = definitionKeys(base(), { ...inputs, buildEnv: {} });
  assertChangesFrom(empty, unset, buildEnvAt);
  // Variables not named by BUILD ENV do not matter; a Map works like a record.
  const unrelated = definitionKeys(base(), { ...inputs, buildEnv: new Map([['GIT_BRANCH', 'main'], ['GIT_COMMIT', 'abc']]) });
  assert.deepEqual(unrelated, original);
});

test('a secret value change moves keys from the SECRET ENV line on; unset differs from empty', () => {
  const original = definitionKeys(base(), inputs);
  const rotated = definitionKeys(base(), { ...inputs, secrets: { NPM_TOKEN: 'rotated' } });
  assertChangesFrom(original, rotated, 6);
  const unset = definitionKeys(base(), { ...inputs, secrets: {} });
  const empty = definitionKeys(base(), { ...inputs, secrets: { NPM_TOKEN: '' } });
  assertChangesFrom(unset, empty, 6);
});

test('MEMORY changes every key, wherever it is written before the first RUN', () => {
  const withMemory = (text: string, bytes: number, at: number) => {
    const instructions = base();
    instructions.splice(at, 0, memory(0, text, bytes));
    const keys = definitionKeys(instructions, inputs);
    keys.splice(at, 1);
    return keys;
  };
  const original = definitionKeys(base(), inputs);
  const twoGigs = withMemory('2G', 2 * 1024 ** 3, 1);
  assertChangesFrom(original, twoGigs, 0);
  assertChangesFrom(twoGigs, withMemory('4G', 4 * 1024 ** 3, 1), 0);
  // Same limit written after COPY instead of after FROM: same keys (position does not matter).
  assert.deepEqual(withMemory('2G', 2 * 1024 ** 3, 3), twoGigs);
});

test('a parent identity change (base image recipe or parent Layerfile key) changes every key', () => {
  const original = definitionKeys(base(), inputs);
  assertChangesFrom(original, definitionKeys(base(), { ...inputs, parentIdentity: imageIdentity('vm/debian:12', 'recipe-2') }), 0);
  const parentKeys = definitionKeys([from(1), run(2, 'apt-get install -y git')], inputs);
  const childOf = (keys: string[]) => definitionKeys(base(), { ...inputs, parentIdentity: layerfileIdentity(finalKey(keys)) });
  const parentEdited = definitionKeys([from(1), run(2, 'apt-get install -y git curl')], inputs);
  assertChangesFrom(childOf(parentKeys), childOf(parentEdited), 0);
  assert.throws(() => finalKey([]), { code: 'STRATA_INTERNAL' });
});

test('SPLIT copies get different keys after the SPLIT (ordered) and the same ones (UNORDERED)', () => {
  const file = [from(1), copy(2, '.', '.'), split(3, 4), run(4, 'npm test')];
  const copy0 = definitionKeys(file, { ...inputs, splitIndices: [0] });
  const copy1 = definitionKeys(file, { ...inputs, splitIndices: [1] });
  assertChangesFrom(copy0, copy1, 2);
  const unordered = [from(1), copy(2, '.', '.'), split(3, 4, true), run(4, 'npm test')];
  assert.deepEqual(
    definitionKeys(unordered, { ...inputs, splitIndices: [0] }),
    definitionKeys(unordered, { ...inputs, splitIndices: [1] }),
  );
});

test('isStep: state-producing instructions only', () => {
  const steps = base().filter(isStep).map((i) => i.kind);
  assert.deepEqual(steps, ['copy', 'env', 'run', 'buildEnv', 'run', 'secretEnv', 'run']);
  for (const i of [from(1), memory(1, '1G', 1024 ** 3), button(1, 'x'), label(1, 'x'), wait(1, 'x'), skipIf(1), checkpoint(1, 'force'), exposeTcp(1, 80)]) {
    assert.equal(isStep(i), false, i.kind);
  }
  assert.equal(isStep(split(1, 2)), true);
});
