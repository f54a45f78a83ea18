// Test hosts: network namespaces of their own, each joined to this host by a veth pair on a /30 of its
// own (this host 10.231.<n>.1, the test host 10.231.<n>.2), so a process started in one reaches this
// host's servers only through the network, as from another machine. Removed after the test (deleting
// the namespace deletes its veth pair); the suite's leftover check also lists namespaces.
import { execFileSync } from 'node:child_process';
import type { TestContext } from 'node:test';

export interface TestHost {
  /** The namespace's name. */
  name: string;
  /** This host's address as the test host sees it (where it reaches servers listening on 0.0.0.0). */
  gateway: string;
  /**
   * Prefix that runs a command in the test host's network namespace only (`nsenter --net`, not `ip netns
   * exec`, which also gives it a mount namespace of its own holding copies of this host's mounts: a
   * store unmounted here would stay mounted there).
   */
  wrap: string[];
}

const ip = (...args: string[]): void => void execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });

/** Test host number `n` (1-250; each test file its own numbers, tests of one file one at a time). */
export function createTestHost(t: TestContext, n: number): TestHost {
  const name = `strata-th${n}`;
  const outside = `sth${n}h`;
  const inside = `sth${n}n`;
  const gateway = `10.231.${n}.1`;
  ip('netns', 'add', name);
  t.after(() => {
    try {
      ip('netns', 'delete', name);
    } catch {
      // already gone
    }
  });
  ip('link', 'add', outside, 'type', 'veth', 'peer', 'name', inside);
  ip('link', 'set', inside, 'netns', name);
  ip('addr', 'add', `${gateway}/30`, 'dev', outside);
  ip('link', 'set', outside, 'up');
  ip('-n', name, 'addr', 'add', `10.231.${n}.2/30`, 'dev', inside);
  ip('-n', name, 'link', 'set', inside, 'up');
  ip('-n', name, 'link', 'set', 'lo', 'up');
  return { name, gateway, wrap: ['nsenter', `--net=/run/netns/${name}`, '--'] };
}
