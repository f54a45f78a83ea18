// Definition keys on parsed Layerfile text: what a user edits is text, so prove the promises there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseLayerfile } from '../../src/layerfile/index.js';
import { definitionKeys, imageIdentity, isStep, type DefinitionKeyInputs } from '../../src/plan/definitionKey.js';

const inputs: DefinitionKeyInputs = {
  parentIdentity: imageIdentity('vm/debian:12', 'recipe-1'),
  buildEnv: { GIT_BRANCH: 'main' },
  secrets: {},
};

/** Keys of the step instructions only, in order (neutral lines repeat keys and shift indexes). */
function stepKeys(text: string): string[] {
  const { layerfile, errors } = parseLayerfile(text, 'Layerfile');
  assert.deepEqual(errors.map((e) => e.format()), []);
  const keys = definitionKeys(layerfile.instructions, inputs);
  return layerfile.instructions.flatMap((instruction, i) => (isStep(instruction) ? [keys[i]!] : []));
}

const original = `FROM vm/debian:12
COPY . /app
WORKDIR /app
RUN npm ci
BUILD ENV GIT_BRANCH
RUN npm test
`;

test('comments, blank lines, spacing between arguments and neutral directives change no key', () => {
  const edited = `# The app's CI
  # the base
FROM   vm/debian:12

COPY  .   /app
LABEL display_name=app
WORKDIR /app
BUTTON run the install?
RUN npm ci   
CHECKPOINT before-tests
BUILD ENV    GIT_BRANCH
SKIP REMAINING IF GIT_BRANCH=gh-pages
WAIT /
RUN npm test
EXPOSE TCP :8080
`;
  assert.deepEqual(stepKeys(edited), stepKeys(original));
});

test('editing the line of step k changes the keys of steps k.. and none before', () => {
  const lines = original.trimEnd().split('\n');
  const before = stepKeys(original);
  // Step index j corresponds to line j + 2 (line 1 is FROM, every other line is a step).
  const replacements = ['COPY . /srv', 'WORKDIR /srv', 'RUN npm install', 'BUILD ENV GIT_BRANCH GIT_TAG', 'RUN npm test -- --bail'];
  replacements.forEach((replacement, j) => {
    const edited = [...lines];
    edited[j + 1] = replacement;
    const after = stepKeys(`${edited.join('\n')}\n`);
    after.forEach((key, i) => {
      if (i < j) assert.equal(key, before[i], `step ${i} unchanged by an edit to step ${j}`);
      else assert.notEqual(key, before[i], `step ${i} changed by an edit to step ${j}`);
    });
  });
});
