// The machine's memory limit. MEMORY *reserves* memory (layer-devops/docs layerfile-reference/memory.md):
// from its line on, the machine has at least that much. It may stand anywhere, several times; a
// smaller value than the limit in force changes nothing. A child Layerfile starts with its parent's
// final limit. Without any MEMORY line a machine gets DEFAULT_MACHINE_MEMORY_BYTES.
import type { Instruction } from '../layerfile/types.js';

/**
 * 4 GiB. The vendor's VMs started small and grew on demand ("We'll automatically add memory as it's
 * requested", at most 4G added at once); a fixed limit must leave room for what used to grow, while
 * still stopping a runaway step long before it hurts the host. MEMORY raises it.
 */
export const DEFAULT_MACHINE_MEMORY_BYTES = 4 * 1024 ** 3;

/** The limit in force just before `instructions[at]` (everything before `at` applied), starting from `initial`. */
export function memoryLimitBefore(instructions: readonly Instruction[], at: number, initial: number): number {
  let limit = initial;
  for (const instruction of instructions.slice(0, Math.max(0, at))) {
    if (instruction.kind === 'memory') limit = Math.max(limit, instruction.bytes);
  }
  return limit;
}
