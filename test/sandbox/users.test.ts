import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveMachineUser } from '../../src/sandbox/users.js';

function fakeRootfs(t: { after: (fn: () => Promise<void>) => void }): string {
  const root = mkdtempSync(join(tmpdir(), 'strata-users-test-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'etc'));
  return root;
}

test('resolves users by name or uid with their supplementary groups', async (t) => {
  const root = fakeRootfs(t);
  writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/bash\nci:x:1000:1000::/home/ci:/bin/bash\n');
  writeFileSync(join(root, 'etc/group'), 'root:x:0:ci\nci:x:1000:\ndocker:x:999:other,ci\nother:x:5:someone\n');
  assert.deepEqual(await resolveMachineUser(root, 'ci'), { name: 'ci', uid: 1000, gid: 1000, additionalGids: [0, 999], home: '/home/ci' });
  assert.equal((await resolveMachineUser(root, 1000)).name, 'ci');
  assert.equal((await resolveMachineUser(root, '0')).home, '/root');
  await assert.rejects(resolveMachineUser(root, 'nobody'), /does not exist/);
});

test('root works without /etc/passwd; a passwd symlink out of the rootfs is refused', async (t) => {
  const root = fakeRootfs(t);
  assert.equal((await resolveMachineUser(root, 'root')).uid, 0);
  symlinkSync('/etc/passwd', join(root, 'etc/passwd'));
  await assert.rejects(resolveMachineUser(root, 'root'), /outside its root/);
});
