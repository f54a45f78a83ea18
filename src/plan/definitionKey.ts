// Definition keys: for every instruction of a Layerfile, a digest of everything *written or configured*
// that decides the machine state after it (the files it read are covered by traces, not by this key).
// Keys chain: key[k] = sha256(key[k-1] + link(k)), so an edit at line k changes key k and every later key
// and no earlier one. Pure: values (env, secrets, parent identity) are passed in.
import { createHash } from 'node:crypto';
import { StrataError } from '../errors.js';
import { expandEnvValue } from '../layerfile/env.js';
import type { Instruction } from '../layerfile/types.js';

/** Bumped when the key format changes, so keys from an older strata never match. */
const KEY_FORMAT = 'strata-definition-key-v1';

/**
 * Instructions that produce state: the engine runs them as steps and may snapshot after them.
 * - RUN (all modes), COPY, CLONE change the machine's files and processes.
 * - ENV, WORKDIR, USER, SETUP FILE, BUILD ENV, SECRET ENV, CACHE, SPLIT change nothing on disk by
 *   themselves but change what every later RUN does (its env, cwd, user, sourced files, mounted caches,
 *   SPLIT index), so they must be part of the chain at their position.
 * Not steps: FROM (the starting point, given as the parent identity), MEMORY (a machine setting that
 * the engine applies between steps, hashed at the head of the chain), and the instructions that only steer the run or its presentation: WAIT
 * (ordering between Layerfiles), BUTTON, SKIP REMAINING IF, LABEL, CHECKPOINT (snapshot policy in all
 * three forms), EXPOSE WEBSITE / EXPOSE TCP (used after the run).
 */
export function isStep(instruction: Instruction): boolean {
  switch (instruction.kind) {
    case 'run':
    case 'copy':
    case 'clone':
    case 'env':
    case 'workdir':
    case 'user':
    case 'setupFile':
    case 'buildEnv':
    case 'secretEnv':
    case 'cache':
    case 'split':
      return true;
    case 'from':
    case 'memory':
    case 'wait':
    case 'button':
    case 'skipRemainingIf':
    case 'label':
    case 'checkpoint':
    case 'exposeWebsite':
    case 'exposeTcp':
      return false;
  }
}

export interface DefinitionKeyInputs {
  /**
   * What the Layerfile starts from: `imageIdentity(name, recipeId)` for a base image, or the parent
   * Layerfile's final definition key (`layerfileIdentity(finalKey(...))`) for `FROM ../x`.
   * Caution: a parent's definition key covers its *definition* only, not the files its COPY steps read.
   * The caller must make a child sensitive to those too (trace the inherited COPY destinations, or
   * mix the parent's final snapshot/source identity into this string), or a child could reuse state
   * built on top of an older parent.
   */
  parentIdentity: string;
  /**
   * Values of the run's environment (strata's variables) for the names BUILD ENV lists. A name absent
   * here, and set by no ENV line, is "unset". ENV lines override these, as in the steps' environment.
   */
  buildEnv: ReadonlyMap<string, string> | Readonly<Record<string, string | undefined>>;
  /**
   * The ENV values the Layerfile starts with (a child's parent set them; empty for an image). BUILD ENV
   * of a name an ENV line set keys the value that line expanded to: `ENV MODE=$GIT_BRANCH` then
   * `BUILD ENV MODE` keys the branch, although the ENV line's text is the same on every branch.
   */
  startEnv?: Readonly<Record<string, string>>;
  /** Secret values by name for SECRET ENV; only their sha256 enters the key. Absent = "unset". */
  secrets: ReadonlyMap<string, string> | Readonly<Record<string, string | undefined>>;
  /**
   * For a copy made by SPLIT: its index at each ordered SPLIT (UNORDERED ones are not counted), in order. Copies run with a
   * different `SPLIT` value, so their later states differ. Omitted = the shared chain before cloning.
   */
  splitIndices?: readonly number[];
}

export function imageIdentity(name: string, recipeId: string): string {
  return `image:${name}@${recipeId}`;
}

export function layerfileIdentity(parentFinalKey: string): string {
  return `layerfile:${parentFinalKey}`;
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** The key after the last instruction: the parent identity of a child Layerfile's `FROM` (via layerfileIdentity). */
export function finalKey(keys: readonly string[]): string {
  const last = keys.at(-1);
  if (last === undefined) throw new StrataError('STRATA_INTERNAL', 'a Layerfile has at least its FROM instruction');
  return last;
}

/**
 * One key per instruction index. A key only moves at instructions that affect state (FROM, the steps);
 * every other instruction repeats the previous key, so inserting or editing a comment, BUTTON, LABEL,
 * WAIT, CHECKPOINT, SKIP REMAINING IF or EXPOSE line changes no key.
 */
export function definitionKeys(instructions: readonly Instruction[], inputs: DefinitionKeyInputs): string[] {
  // MEMORY may be written anywhere (it raises the limit from its line on), but every MEMORY value is
  // hashed up front: editing, adding or removing one reruns the whole Layerfile, which is conservative
  // (a step that succeeded with less memory is valid with more), and a restored machine gets the
  // limit the current Layerfile puts in force at its restore point (engine/memory.ts).
  const memory = instructions.filter((i) => i.kind === 'memory').map((i) => i.bytes);
  let key = headKey(memory, inputs.parentIdentity);
  const keys: string[] = [];
  let splitOrdinal = 0;
  // The ENV values so far, expanded like the engine expands them (stepEnv.applyToState), for BUILD ENV.
  const env: Record<string, string> = { ...inputs.startEnv };
  const valueOf = (name: string): string | undefined => (Object.hasOwn(env, name) ? env[name] : lookup(inputs.buildEnv, name));
  for (const instruction of instructions) {
    if (instruction.kind === 'env') for (const { name, raw } of instruction.vars) env[name] = expandEnvValue(raw, valueOf);
    const link = linkOf(instruction, inputs, valueOf, () => inputs.splitIndices?.[splitOrdinal++]);
    if (link !== undefined) key = sha256Hex(`${key}\n${JSON.stringify(link)}`);
    keys.push(key);
  }
  return keys;
}

function headKey(memoryBytes: number[], parentIdentity: string): string {
  // JSON keeps the parts unambiguous (no separator inside a value can fake another split).
  return sha256Hex(JSON.stringify([KEY_FORMAT, parentIdentity, memoryBytes]));
}

/** What an instruction adds to the chain, or undefined if it does not affect state. */
function linkOf(
  instruction: Instruction,
  inputs: DefinitionKeyInputs,
  envValue: (name: string) => string | undefined,
  nextSplitIndex: () => number | undefined,
): unknown[] | undefined {
  if (instruction.kind === 'from') return [instruction.canonical];
  if (!isStep(instruction)) return undefined;
  switch (instruction.kind) {
    case 'buildEnv':
      // null (unset) and '' (set, empty) are different values and give different keys.
      return [instruction.canonical, instruction.names.map((name) => [name, envValue(name) ?? null])];
    case 'secretEnv':
      return [
        instruction.canonical,
        instruction.names.map((name) => {
          const value = lookup(inputs.secrets, name);
          return [name, value === undefined ? null : sha256Hex(value)];
        }),
      ];
    case 'split': {
      // UNORDERED copies get only SPLIT_NUM, so they are identical: no index in their key.
      if (instruction.unordered) return [instruction.canonical];
      return [instruction.canonical, nextSplitIndex() ?? null];
    }
    default:
      return [instruction.canonical];
  }
}

function lookup(
  values: ReadonlyMap<string, string> | Readonly<Record<string, string | undefined>>,
  name: string,
): string | undefined {
  if (values instanceof Map) return values.get(name);
  const record = values as Readonly<Record<string, string | undefined>>;
  return Object.hasOwn(record, name) ? record[name] : undefined;
}
