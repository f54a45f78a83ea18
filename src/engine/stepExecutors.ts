// Executes one step in the machine by instruction kind: what it observed under the traced copies
// (trace), why it failed (null: it did not), the copies it made, and the ExecState after it.
// Steps that change the machine leave it frozen (MachineSession.freeze): the caller snapshots, then thaws.
import { StrataError } from '../errors.js';
import type { Instruction } from '../layerfile/types.js';
import type { CopyRecord } from '../plan/types.js';
import type { TreeId } from '../source/git.js';
import type { RemoteCache } from '../source/remote.js';
import type { BackgroundCommand, ChainClone } from '../store/cacheIndex.js';
import { emptyStepTrace, type StepTrace } from '../trace/types.js';
import { cloneIntoMachine } from './clone.js';
import { copyIntoMachine } from './copy.js';
import { BACKGROUND_CHECK_MS, describeFailure, type MachineSession } from './machineSession.js';
import { applyToState, execEnv, runScript, shellQuote, type ExecState } from './stepEnv.js';

export interface StepOutcome {
  trace: StepTrace | null;
  failure: string | null;
  /** The copies a COPY or CLONE step made (none for other steps). */
  copies: CopyRecord[];
  /** The ExecState for the steps after this one. */
  state: ExecState;
  /** A RUN BACKGROUND command that passed its check: it runs on, and a restore re-launches it. */
  background: BackgroundCommand | null;
}

export interface StepRequest {
  session: MachineSession;
  step: number;
  instruction: Instruction;
  state: ExecState;
  /** Strata's variables for this step (SPLIT/SPLIT_NUM only from the SPLIT line on). */
  baseEnv: Record<string, string>;
  /** Where COPY and CLONE read from. */
  sources: { repoDir: string; tree: TreeId; layerfilePath: string; remotes: RemoteCache | undefined; clones: ChainClone[] };
  signal: AbortSignal | undefined;
  stepTimeoutMs: number | undefined;
}

export async function executeStep(request: StepRequest): Promise<StepOutcome> {
  const { session, step, instruction, baseEnv, sources, signal, stepTimeoutMs } = request;
  let state = request.state;
  // A step that does not run in the machine observes nothing there.
  let outcome: { trace: StepTrace | null; failure: string | null } = { trace: emptyStepTrace(), failure: null };
  let copies: CopyRecord[] = [];
  let background: BackgroundCommand | null = null;

  const runInMachine = async (command: string, as: ExecState): Promise<typeof outcome> => {
    await session.beginStep(step);
    const result = await session.exec({
      command: runScript(command, as),
      env: execEnv(baseEnv, as),
      secrets: as.secrets,
      workdir: as.workdir,
      user: as.user,
      step,
      signal,
      timeoutMs: stepTimeoutMs,
    });
    // A cancelled step ends here: nothing of it is recorded, the machine goes (MachineSession.close).
    throwIfCancelled(signal);
    await session.freeze();
    const trace = await session.endStep();
    const failure = result.exitCode === 0 ? null : result.timedOut && stepTimeoutMs !== undefined ? `timed out after ${Math.round(stepTimeoutMs / 100) / 10} s (the step timeout)` : describeFailure(result);
    return { trace, failure };
  };
  // RUN BACKGROUND: the step's window is the start plus the check; the process runs on after it.
  const startInMachine = async (command: BackgroundCommand): Promise<typeof outcome> => {
    await session.beginStep(step);
    const started = await session.startBackground(command, step);
    const ended = await started.exitedWithin(BACKGROUND_CHECK_MS);
    await session.freeze();
    const trace = await session.endStep();
    // Exiting 0 at once is fine (a daemon that forks); the command is re-launched all the same.
    const failure = ended && ended.exitCode !== 0 ? `background command ${describeFailure(ended)} within ${BACKGROUND_CHECK_MS / 1000} s` : null;
    if (failure === null) background = command;
    return { trace, failure };
  };
  // COPY and CLONE write from the host into the machine's root (resolved like the machine would),
  // frozen so nothing inside races the writes. The copy itself is not traced (its records describe
  // it), but what background processes (or a re-launch) touched since the previous step is: this
  // step's snapshot holds their effects.
  const traceUntilNow = async (): Promise<typeof outcome> => {
    await session.beginStep(step);
    await session.freeze();
    return { trace: await session.endStep(), failure: null };
  };

  switch (instruction.kind) {
    case 'run':
      if (instruction.mode === 'background') {
        outcome = await startInMachine({ command: runScript(instruction.command, state), env: execEnv(baseEnv, state), workdir: state.workdir, user: state.user, ...(state.secrets?.length ? { secrets: state.secrets } : {}) });
      } else {
        outcome = await runInMachine(instruction.command, state);
      }
      break;
    case 'copy': {
      outcome = await traceUntilNow();
      copies = await copyIntoMachine({ repoDir: sources.repoDir, tree: sources.tree, rootfs: session.rootfs, layerfilePath: sources.layerfilePath, sources: instruction.sources, dest: instruction.dest, workdir: state.workdir });
      await session.traceCopies(copies);
      break;
    }
    case 'clone': {
      // Like COPY, from the remote's tree fetched before planning.
      outcome = await traceUntilNow();
      copies = await cloneIntoMachine({ remotes: sources.remotes, clones: sources.clones, layerfilePath: sources.layerfilePath, instruction, rootfs: session.rootfs, workdir: state.workdir });
      await session.traceCopies(copies);
      break;
    }
    case 'workdir': {
      state = applyToState(state, instruction, baseEnv);
      // As root (a USER may not create it where it is), and a directory it creates belongs to that USER.
      const dir = shellQuote(state.workdir);
      const user = shellQuote(state.user);
      outcome = await runInMachine(`[ -d ${dir} ] || { mkdir -p ${dir} && chown ${user}: ${dir}; }`, { ...state, user: 'root', workdir: '/', setupFiles: [] });
      break;
    }
    case 'user': {
      const name = shellQuote(instruction.name);
      outcome = await runInMachine(
        `id -u ${name} >/dev/null 2>&1 || useradd --create-home --groups root ${name}`,
        { ...state, user: 'root', workdir: '/', setupFiles: [] },
      );
      state = applyToState(state, instruction, baseEnv);
      break;
    }
    case 'cache':
      // The directories are mounted already; give them to this line's user, who may be new.
      await session.claimCacheDirsOf(instruction.range.line, baseEnv);
      break;
    default:
      // ENV, SETUP FILE, BUILD ENV: they change how later steps run, not the machine.
      state = applyToState(state, instruction, baseEnv);
      break;
  }
  return { ...outcome, copies, state, background };
}

/** Does this kind of step change the machine's files (and so get a new state and snapshot)? */
export function changesMachine(instruction: Instruction): boolean {
  return instruction.kind === 'run' || instruction.kind === 'copy' || instruction.kind === 'clone' || instruction.kind === 'workdir' || instruction.kind === 'user';
}

export function throwIfCancelled(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new StrataError('STRATA_CANCELLED', 'the run was cancelled');
}
