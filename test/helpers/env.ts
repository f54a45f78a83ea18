// Test environment guards. Tests that need root (btrfs, namespaces, cgroups) must run in CI, which is
// root: there a missing privilege is a failure, never a skip. Only a non-root developer run skips them.
import type { TestContext } from 'node:test';

export const isRoot = process.getuid?.() === 0;
export const inCI = process.env.CI === 'true';

/** Call first in a test that needs root. Fails in CI when not root; skips locally when not root. */
export function requireRoot(t: TestContext): boolean {
  if (isRoot) return true;
  if (inCI) throw new Error('this test needs root and CI must run it as root');
  t.skip('needs root');
  return false;
}
