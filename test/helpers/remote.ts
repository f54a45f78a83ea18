// A bare git repository to CLONE from, with a work tree that pushes to it. Removed after the test.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

export interface TestRemote {
  /** The bare repository's path (a local-path CLONE URL). */
  bare: string;
  /** The same as a file:// URL. */
  url: string;
  /** Pushes a commit with `files` to `branch`: an existing branch continues, a new one starts from the current commit. */
  commit(branch: string, files: Record<string, string>): void;
  /** Deletes `branch` on the remote. */
  drop(branch: string): void;
}

export function createRemote(t: TestContext, headBranch: string): TestRemote {
  const bare = mkdtempSync(join(tmpdir(), 'strata-e2e-remote-'));
  const work = mkdtempSync(join(tmpdir(), 'strata-e2e-remote-work-'));
  t.after(() => {
    rmSync(bare, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  });
  const git = (cwd: string, ...args: string[]) => execFileSync('git', args, { cwd, encoding: 'utf8' }).trim();
  git(bare, 'init', '-q', '--bare', '-b', headBranch);
  git(work, 'init', '-q', '-b', headBranch);
  git(work, 'config', 'user.email', 'remote@example.com');
  git(work, 'config', 'user.name', 'remote');
  git(work, 'remote', 'add', 'origin', bare);
  return {
    bare,
    url: `file://${bare}`,
    commit(branch, files) {
      const exists = git(work, 'branch', '--list', branch) !== '';
      git(work, 'checkout', '-q', ...(exists ? [branch] : ['-b', branch]));
      for (const [name, content] of Object.entries(files)) writeFileSync(join(work, name), content);
      git(work, 'add', '-A');
      git(work, 'commit', '-q', '--allow-empty', '-m', `on ${branch}`);
      git(work, 'push', '-q', 'origin', `${branch}:${branch}`);
    },
    drop(branch) {
      git(work, 'push', '-q', 'origin', `:${branch}`);
    },
  };
}
