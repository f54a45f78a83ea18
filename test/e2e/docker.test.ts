// Docker inside a machine (issue #5), end to end: docker.io from Debian's archive, dockerd started by
// strata-dockerd as RUN BACKGROUND (in a user namespace of its own: the machine gains no privilege),
// an image built FROM scratch (no registry here) and run; then, on the next commit, RUN REPEATABLE
// restarts from the previous build's state, so docker's layer cache (in /var/lib/docker, part of the
// snapshot) is still there and only the changed layer is rebuilt.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireRoot } from '../helpers/env.js';
import { createGitRepo, createTestEngine, stepId } from '../helpers/engine.js';

const layerfile = `FROM vm/debian:12
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker.io uidmap busybox-static >/dev/null && docker --version
COPY . /app
RUN BACKGROUND strata-dockerd
RUN REPEATABLE strata-dockerd wait && rm -rf /tmp/ctx && cp -r /app/image /tmp/ctx && cp /bin/busybox /tmp/ctx/ && docker build -t hello /tmp/ctx
RUN docker run --rm --network none hello && echo "store-owner=$(stat -c %u /var/lib/docker/overlay2)" && echo "daemon-user=$(ps -o uid= -C dockerd | tr -d ' ')"
`;

const dockerfile = `FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY message.txt /message.txt
CMD ["/bin/sh", "-c", "echo \\"container says: $(cat /message.txt) as uid $(id -u)\\""]
`;

test('docker in a machine: dockerd in the background, docker build FROM scratch and docker run; REPEATABLE keeps the layer cache', { timeout: 300_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const repo = createGitRepo(t, {
    Layerfile: layerfile,
    'image/Dockerfile': dockerfile,
    'image/message.txt': 'first',
  });
  const engine = await createTestEngine(t);

  const first = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  const firstOutput = [...first.output.values()].join('');
  assert.equal(first.result.status, 'success', firstOutput);
  const build = first.output.get(stepId(3)) ?? '';
  assert.match(build, /Successfully tagged hello:latest/, build);
  const check = first.output.get(stepId(4)) ?? '';
  assert.match(check, /container says: first as uid 0/, check);
  // Docker's root is not the machine's: its files and its daemon belong to the mapped range.
  assert.match(check, /store-owner=100000\n/, check);
  assert.match(check, /daemon-user=100000\n/, check);

  repo.commit('second message', { 'image/message.txt': 'second' });
  const second = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  const secondOutput = [...second.output.values()].join('');
  assert.equal(second.result.status, 'success', secondOutput);
  assert.ok(!second.ran.includes(stepId(0)), `apt-get did not run again: ${second.ran.join(', ')}`);
  const rebuild = second.output.get(stepId(3)) ?? '';
  // The busybox layers come from the cache the first build left in the snapshot; the message layer is new.
  assert.equal(rebuild.match(/Using cache/g)?.length, 2, rebuild);
  assert.match(second.output.get(stepId(4)) ?? '', /container says: second as uid 0/);
});
