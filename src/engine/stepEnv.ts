// The environment every step sees (LAYERFILE.md "Environment in every step"), and the per-Layerfile
// state that ENV / WORKDIR / USER / SETUP FILE / BUILD ENV change as the steps go.
import { expandEnvValue } from '../layerfile/index.js';
import type { Instruction } from '../layerfile/types.js';
import type { CommitInfo } from '../source/git.js';
import { SPLIT_TIMINGS_PATH, TIMINGS_OUT_PATH } from './splitTimings.js';

export interface RunIdentity {
  jobId: string;
  runnerId: string;
  repositoryName: string;
  retryIndex: number;
  commit: CommitInfo | null;
  split?: { index: number; count: number; unordered: boolean } | undefined;
  exposeWebsiteHost?: string | undefined;
  /** What the caller knows about the job beyond the commit (the LAYERCI_* variables). */
  job?: JobFacts | undefined;
}

/**
 * What whoever started a run knows about it (the server's job, the CLI): the hosted product's
 * LAYERCI_* variables are derived from it. Unknown facts leave their variable empty, never missing.
 */
export interface JobFacts {
  /** The job's id (the server's job); default the engine's run id. */
  jobId?: string | undefined;
  /** The branch the job builds; default the commit's branch. */
  branch?: string | undefined;
  /** Link to the pull request that triggered the job. */
  pullRequestUrl?: string | undefined;
  /** The repository's remote URL: owner and name come from it (github.com/a/b → a, b). */
  remoteUrl?: string | undefined;
  /** The organisation (the hosted product's dashboard); default the repository's owner. */
  orgName?: string | undefined;
  /** Data passed when the run was started through the API. */
  apiExtra?: string | undefined;
  /** `user:token` that can clone this repository over https. */
  cloneUser?: string | undefined;
  /** The host of this run's deployment, when there is one. */
  deploymentHost?: string | undefined;
}

/**
 * Owner and name of a repository from its remote URL: `https://github.com/a/b.git`, `git@github.com:a/b`,
 * `ssh://git@host:22/group/sub/b` (owner `group/sub`), `/srv/git/b.git` (no owner). Pure.
 */
export function repoOwnerAndName(url: string): { owner: string; name: string } {
  let path = url.trim().replace(/[?#].*$/, '');
  const scheme = /^[a-z][a-z0-9+.-]*:\/\/[^/]*(\/.*)?$/i.exec(path);
  if (scheme) path = scheme[1] ?? '';
  else {
    const scp = /^[^/:]+@?[^/:]*:(?!\/\/)(.*)$/.exec(path); // git@host:owner/name
    if (scp && !path.startsWith('/')) path = scp[1] ?? '';
  }
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  const name = (parts.pop() ?? '').replace(/\.git$/, '');
  // A path on this host (or file://) names a directory, not an owner.
  const owner = /^(\/|\.|file:)/i.test(url.trim()) ? '' : parts.join('/');
  return { owner, name };
}

/**
 * SUBDOMAIN: the branch cleaned up for use in a host name, as the hosted product did
 * (`feat/add-some-dashboard-pages` → `add-some-dashboard-pages`). Pure.
 */
export function branchSubdomain(branch: string): string {
  const last = branch.split('/').filter(Boolean).pop() ?? '';
  return last
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/-+/g, '-')
    .slice(0, 63)
    .replace(/^-+|-+$/g, '');
}

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/strata/bin';

/** Variables strata sets in every step. Not part of any definition key unless BUILD ENV names them. */
export function baseStepEnv(identity: RunIdentity): Record<string, string> {
  const commit = identity.commit;
  const job = identity.job ?? {};
  const jobId = job.jobId ?? identity.jobId;
  const branch = job.branch ?? commit?.branch ?? '';
  const remote = job.remoteUrl ? repoOwnerAndName(job.remoteUrl) : { owner: '', name: '' };
  const exposeWebsiteHost = identity.exposeWebsiteHost ?? '';
  const env: Record<string, string> = {
    PATH: DEFAULT_PATH,
    // Colours work as in the hosted product's terminal (terminfo comes with every image).
    TERM: 'xterm-256color',
    CI: 'true',
    IS_CI_MACHINE: 'true',
    CI_MACHINE: 'true',
    IN_CI_MACHINE: 'true',
    IN_CI: 'true',
    DEBIAN_FRONTEND: 'noninteractive',
    GIT_BRANCH: branch,
    GIT_COMMIT: commit?.commit ?? '',
    GIT_SHORT_COMMIT: commit?.commit.slice(0, 12) ?? '',
    GIT_TAG: commit?.tag ?? '',
    GIT_COMMIT_TITLE: commit?.title ?? '',
    JOB_ID: jobId,
    RUNNER_ID: identity.runnerId,
    RETRY_INDEX: String(identity.retryIndex),
    REPOSITORY_NAME: identity.repositoryName,
    EXPOSE_WEBSITE_HOST: exposeWebsiteHost,
    // The hosted product's documented variables (its BUILD ENV reference; docs/machine.md says which
    // strata leaves empty).
    LAYERCI: 'true',
    LAYERCI_BRANCH: branch,
    LAYERCI_JOB_ID: jobId,
    LAYERCI_PULL_REQUEST: job.pullRequestUrl ?? '',
    LAYERCI_REPO_NAME: remote.name || identity.repositoryName,
    LAYERCI_REPO_OWNER: remote.owner,
    LAYERCI_ORG_NAME: job.orgName ?? remote.owner,
    LAYERCI_RUNNER_ID: identity.runnerId,
    SUBDOMAIN: branchSubdomain(branch),
    DEPLOYMENT_HOST: job.deploymentHost ?? '',
    EXPOSE_WEBSITE_URL: exposeWebsiteHost ? `https://${exposeWebsiteHost}` : '',
    API_EXTRA: job.apiExtra ?? '',
    GIT_CLONE_USER: job.cloneUser ?? '',
    // Where steps report how long each test file took (`path seconds` lines; strata-split --run does it).
    STRATA_TIMINGS_OUT: TIMINGS_OUT_PATH,
  };
  if (identity.split) {
    env.SPLIT_NUM = String(identity.split.count);
    if (!identity.split.unordered) {
      env.SPLIT = String(identity.split.index);
      // strata-split's default timings (empty when strata has none for this SPLIT yet).
      env.STRATA_SPLIT_TIMINGS = SPLIT_TIMINGS_PATH;
    }
  }
  return env;
}

/** What the steps so far changed about how later steps run. Inherited by child Layerfiles. */
export interface ExecState {
  /** Variables set by ENV (on top of the base step environment). */
  env: Record<string, string>;
  workdir: string;
  user: string;
  setupFiles: string[];
  /**
   * Names SECRET ENV made available from its line on. Only names: the values are added to a process's
   * environment at exec time (runLayerfile), so they are never part of this state or of ENV expansion.
   */
  secrets?: string[] | undefined;
}

export const initialExecState = (): ExecState => ({ env: {}, workdir: '/root', user: 'root', setupFiles: [] });

/**
 * The environment a RUN sees: base variables, then ENV values. HOME, USER and LOGNAME come from the
 * machine's /etc/passwd for the step's user (the sandbox fills them in) unless ENV set them.
 */
export function execEnv(base: Record<string, string>, state: ExecState): Record<string, string> {
  return { ...base, ...state.env };
}

/** Applies a metadata instruction (ENV, WORKDIR, USER, SETUP FILE) to the state; others leave it as is. */
export function applyToState(state: ExecState, instruction: Instruction, base: Record<string, string>): ExecState {
  switch (instruction.kind) {
    case 'env': {
      const env = { ...state.env };
      for (const { name, raw } of instruction.vars) {
        env[name] = expandEnvValue(raw, (n) => env[n] ?? base[n]);
      }
      return { ...state, env };
    }
    case 'workdir': {
      // The parser already removed quotes from the directory: expand variables only.
      const dir = instruction.dir.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (_m, braced?: string, bare?: string) => {
        const name = (braced ?? bare) as string;
        return state.env[name] ?? base[name] ?? '';
      });
      return { ...state, workdir: resolveWorkdir(state.workdir, dir) };
    }
    case 'user':
      return { ...state, user: instruction.name };
    case 'setupFile':
      return { ...state, setupFiles: [...state.setupFiles, ...instruction.paths.map((p) => resolveWorkdir(state.workdir, p))] };
    case 'secretEnv':
      return { ...state, secrets: [...new Set([...(state.secrets ?? []), ...instruction.names])] };
    default:
      return state;
  }
}

function resolveWorkdir(current: string, dir: string): string {
  const joined = dir.startsWith('/') ? dir : `${current}/${dir}`;
  const parts: string[] = [];
  for (const part of joined.split('/')) {
    if (!part || part === '.') continue;
    if (part === '..') parts.pop();
    else parts.push(part);
  }
  return '/' + parts.join('/');
}

/** The shell text a RUN executes: SETUP FILEs sourced first, then the command. */
export function runScript(command: string, state: ExecState): string {
  if (state.setupFiles.length === 0) return command;
  const sources = state.setupFiles.map((f) => `. ${shellQuote(f)}`).join(' && ');
  return `${sources} && ${command}`;
}

export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/**
 * Index of the first SKIP REMAINING IF whose conditions hold against the step environment at that
 * point (strata's variables plus the ENV values set before it), or `instructions.length`. `base` may
 * depend on the instruction's index: SPLIT/SPLIT_NUM exist only from the SPLIT line on.
 */
export function skipIndex(
  instructions: readonly Instruction[],
  start: ExecState,
  base: Record<string, string> | ((instructionIndex: number) => Record<string, string>),
): number {
  const baseAt = typeof base === 'function' ? base : () => base;
  let state = start;
  for (const [index, instruction] of instructions.entries()) {
    if (instruction.kind === 'skipRemainingIf' && skipConditionsHold(instruction, execEnv(baseAt(index), state))) return index;
    state = applyToState(state, instruction, baseAt(index));
  }
  return instructions.length;
}

/** SKIP REMAINING IF: do all conditions hold against the environment? */
export function skipConditionsHold(instruction: Extract<Instruction, { kind: 'skipRemainingIf' }>, env: Record<string, string>): boolean {
  return instruction.conditions.every(({ name, op, value }) => {
    const actual = env[name] ?? '';
    switch (op) {
      case '=':
        return actual === value;
      case '!=':
        return actual !== value;
      case '=~':
        return new RegExp(value).test(actual);
      case '!=~':
        return !new RegExp(value).test(actual);
    }
  });
}
