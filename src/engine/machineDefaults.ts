// What every machine strata starts gets, whether it runs steps, serves a preview or hosts a debug
// shell: strata's helpers (machine-tools/bin: strata-split, strata-dockerd) read-only at /opt/strata
// (on every step's PATH), and the nested-containers mode that lets docker run inside (in a user
// namespace of its own; it adds no privilege to the machine: see MachineSpec.nestedContainers). A
// restored state whose background commands use either must find them in every kind of machine.
import { fileURLToPath } from 'node:url';

export const MACHINE_TOOLS_MOUNT = {
  source: fileURLToPath(new URL('../../machine-tools', import.meta.url)),
  destination: '/opt/strata',
  readOnly: true,
} as const;

/** Options for EngineSandbox.start; `mounts` are added after strata's own. */
export function machineDefaults(mounts: ReadonlyArray<{ source: string; destination: string; readOnly?: boolean }> = []) {
  return { mounts: [MACHINE_TOOLS_MOUNT, ...mounts], nestedContainers: true } as const;
}
