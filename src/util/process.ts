// Small facts about host processes, for locks and leftovers owned by a pid.
import { readlinkSync } from 'node:fs';

/** Whether a process with this pid exists (signal 0 probes without sending anything). */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Whether the process runs in a user namespace other than this process's (a system machine's init):
 * whoever joins its other namespaces must join that one too. False for a process that is gone.
 */
export function hasOwnUserNamespace(pid: number): boolean {
  try {
    return readlinkSync(`/proc/${pid}/ns/user`) !== readlinkSync('/proc/self/ns/user');
  } catch {
    return false;
  }
}
