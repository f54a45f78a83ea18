// Resolves a machine user (name or uid) against the machine's own /etc/passwd and /etc/group, read
// from the host side: runtimes take numeric ids only.
import { readFile, realpath } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { StrataError } from '../errors.js';

export interface MachineUser {
  name: string;
  uid: number;
  gid: number;
  /** Supplementary groups from /etc/group (without the primary gid). */
  additionalGids: number[];
  home: string;
}

/** Reads a file of the machine, refusing symlinks that lead outside its root. */
async function readMachineFile(rootfs: string, machinePath: string): Promise<string> {
  const root = await realpath(rootfs);
  const resolved = await realpath(join(root, machinePath));
  if (resolved !== root && !resolved.startsWith(root + sep)) {
    throw new StrataError('STRATA_SANDBOX_EXEC', `${machinePath} of the machine points outside its root`);
  }
  return readFile(resolved, 'utf8');
}

export async function resolveMachineUser(rootfs: string, user: string | number): Promise<MachineUser> {
  const wanted = String(user);
  let passwd: string;
  try {
    passwd = await readMachineFile(rootfs, '/etc/passwd');
  } catch (error) {
    if (error instanceof StrataError) throw error;
    passwd = '';
  }
  let found: MachineUser | undefined;
  for (const line of passwd.split('\n')) {
    const [name, , uid, gid, , home] = line.split(':');
    if (name === undefined || uid === undefined || gid === undefined) continue;
    if (name === wanted || uid === wanted) {
      found = { name, uid: Number(uid), gid: Number(gid), additionalGids: [], home: home || '/' };
      break;
    }
  }
  if (!found) {
    // root works even in a root filesystem without /etc/passwd.
    if (wanted === 'root' || wanted === '0') return { name: 'root', uid: 0, gid: 0, additionalGids: [], home: '/root' };
    throw new StrataError('STRATA_SANDBOX_EXEC', `user ${wanted} does not exist in the machine's /etc/passwd`, {
      hint: 'create it first (USER creates missing users), or use an existing name or uid',
    });
  }
  let group = '';
  try {
    group = await readMachineFile(rootfs, '/etc/group');
  } catch {
    // no supplementary groups
  }
  for (const line of group.split('\n')) {
    const [, , gid, members] = line.split(':');
    if (gid === undefined || members === undefined) continue;
    const numericGid = Number(gid);
    if (numericGid !== found.gid && members.split(',').includes(found.name)) found.additionalGids.push(numericGid);
  }
  return found;
}
