// The BuildKit benchmark's pure helpers: Layerfile -> Dockerfile translation and reading which steps
// `docker build --progress plain` ran or took from its cache.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseBuildSteps } from '../../bench/docker/buildOutput.js';
import { layerfileToDockerfile } from '../../bench/docker/translate.js';

const images = { 'vm/debian:12': 'strata-bench/debian:12' };

test('the seed Layerfile becomes a bash-shelled Dockerfile on the imported image', () => {
  const layerfile = 'FROM vm/debian:12\nCOPY . .\nRUN sleep 20 && cat file1\nRUN sleep 20 && cat file2\n';
  assert.equal(
    layerfileToDockerfile(layerfile, { images }),
    'FROM strata-bench/debian:12\nSHELL ["/bin/bash", "-c"]\nCOPY . .\nRUN sleep 20 && cat file1\nRUN sleep 20 && cat file2\n',
  );
});

test('ENV, WORKDIR, comments and continuation lines translate', () => {
  const layerfile = [
    'FROM vm/debian:12',
    '# a comment',
    'ENV A=1 B="x $A" C=\'$A\'',
    'ENV GREETING hello world',
    'WORKDIR app',
    'RUN echo one \\',
    '  two',
    '',
  ].join('\n');
  assert.equal(
    layerfileToDockerfile(layerfile, { images }),
    [
      'FROM strata-bench/debian:12',
      'SHELL ["/bin/bash", "-c"]',
      'ENV A=1 B="x $A" C=\'$A\'',
      'ENV GREETING="hello world"',
      'WORKDIR app',
      'RUN echo one   two',
      '',
    ].join('\n'),
  );
});

test('COPY names with spaces use the JSON form', () => {
  const dockerfile = layerfileToDockerfile('FROM vm/debian:12\nCOPY "my file" other /dst/\nCOPY a b/\n', { images });
  assert.match(dockerfile, /^COPY \["my file","other","\/dst\/"\]$/m);
  assert.match(dockerfile, /^COPY a b\/$/m);
});

test('directives without a Dockerfile equivalent throw, naming the line', () => {
  const cases: Array<[string, RegExp]> = [
    ['FROM vm/debian:12\nRUN BACKGROUND sleep 100\n', /Layerfile:2: RUN BACKGROUND/],
    ['FROM vm/debian:12\nRUN REPEATABLE make\n', /Layerfile:2: RUN REPEATABLE/],
    ['FROM vm/debian:12\nCACHE /root/.npm\n', /Layerfile:2: CACHE/],
    ['FROM vm/debian:12\nSPLIT 2\n', /Layerfile:2: SPLIT 2/],
    ['FROM vm/debian:12\nSECRET ENV TOKEN\n', /Layerfile:2: SECRET ENV/],
    ['FROM ../base\nRUN true\n', /Layerfile:1: FROM another Layerfile/],
    ['FROM vm/ubuntu:22.04\nRUN true\n', /no Docker image given for vm\/ubuntu:22\.04/],
  ];
  for (const [layerfile, message] of cases) {
    assert.throws(() => layerfileToDockerfile(layerfile, { images }), message, layerfile);
  }
});

test('a Layerfile that does not parse throws', () => {
  assert.throws(() => layerfileToDockerfile('RUN true\n', { images }), /does not parse/);
});

test('a Layerfile in a subdirectory: COPY sources become repo-root paths, FROM ../base the image built from it', () => {
  const layerfileImages = { 'base/Layerfile': 'strata-bench/monorepo-base:latest' };
  const child = 'FROM ../../base\nWORKDIR /srv/api\nCOPY . .\nCOPY /shared/lib.txt src/../x ./\nRUN make\n';
  assert.equal(
    layerfileToDockerfile(child, { images, file: 'packages/api/Layerfile', layerfileImages }),
    'FROM strata-bench/monorepo-base:latest\nWORKDIR /srv/api\nCOPY packages/api .\nCOPY shared/lib.txt packages/api/x ./\nRUN make\n',
  );
  // The same parent written from the repo root, and a root Layerfile's sources kept as written.
  assert.match(layerfileToDockerfile('FROM /base\nCOPY . /app\n', { images, file: 'web/Layerfile', layerfileImages }), /^FROM strata-bench\/monorepo-base:latest\nCOPY web \/app\n$/);
  assert.match(layerfileToDockerfile('FROM vm/debian:12\nCOPY ./a /b\n', { images }), /^COPY \.\/a \/b$/m);
  // A parent with no image given, and a source outside the repository, throw.
  assert.throws(() => layerfileToDockerfile('FROM ../other\n', { images, file: 'api/Layerfile', layerfileImages }), /api\/Layerfile:1: FROM another Layerfile needs the image/);
  assert.throws(() => layerfileToDockerfile('FROM vm/debian:12\nCOPY ../../x /x\n', { images, file: 'api/Layerfile' }), /outside the repository/);
});

// Shaped like docker 20.10's BuildKit output: vertices printed out of order, repeated while running.
const plainOutput = `#1 [internal] load build definition from seed.Dockerfile
#1 sha256:5e6c
#1 transferring dockerfile: 153B done
#1 DONE 0.0s

#4 [1/4] FROM docker.io/strata-bench/debian:12
#4 sha256:7e6f
#4 DONE 0.0s

#6 [internal] load build context
#6 transferring context: 98B done
#6 DONE 0.0s

#5 [2/4] COPY . .
#5 sha256:cdc0
#5 CACHED

#7 [3/4] RUN sleep 20 && cat file1
#7 sha256:000d
#7 CACHED

#8 [4/4] RUN sleep 20 && cat file2
#8 sha256:036a
#8 20.055 2b
#8 [4/4] RUN sleep 20 && cat file2
#8 DONE 20.1s

#9 exporting to image
#9 DONE 0.0s
`;

test('build output: CACHED steps vs executed ones, FROM and internal vertices left out', () => {
  const steps = parseBuildSteps(plainOutput);
  assert.deepEqual(steps.steps, [
    { label: '[2/4] COPY . .', cached: true },
    { label: '[3/4] RUN sleep 20 && cat file1', cached: true },
    { label: '[4/4] RUN sleep 20 && cat file2', cached: false },
  ]);
  assert.equal(steps.ran, 1);
  assert.equal(steps.cached, 2);
});

test('build output: a build where everything ran, and one with no steps', () => {
  const allRan = plainOutput.replace(/^#(\d+) CACHED$/gm, '#$1 DONE 0.1s');
  assert.deepEqual([parseBuildSteps(allRan).ran, parseBuildSteps(allRan).cached], [3, 0]);
  assert.deepEqual(parseBuildSteps('#1 [internal] load build definition\n#1 DONE 0.0s\n'), { steps: [], ran: 0, cached: 0 });
});
