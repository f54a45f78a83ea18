// Typed Layerfile instructions: a tagged union with one variant per directive (LAYERFILE.md).
// Produced by the parser (syntax nodes -> instructions); consumed by the graph, the planner and the engine.

/** Where an instruction came from. Lines and columns are 1-based; `line` is the first physical line. */
export interface SourceRange {
  file: string;
  line: number;
  column: number;
  endLine: number;
}

interface Base {
  range: SourceRange;
  /** Canonical text: keyword + normalised arguments, no comments, single spaces. Used by definition keys. */
  canonical: string;
}

export type FromSource =
  /** `vm/debian:12` */
  | { type: 'image'; name: string }
  /** `../base`, `/base`, `../base/Layerfile`: path as written, resolved by the graph. */
  | { type: 'layerfile'; path: string };

export type RunMode = 'normal' | 'background' | 'repeatable';

export type SkipOperator = '=' | '!=' | '=~' | '!=~';
export interface SkipCondition { name: string; op: SkipOperator; value: string }

export interface ExposeWebsiteTarget {
  scheme: 'http' | 'https';
  /** 'localhost' or an explicit host given in the address. */
  host: string;
  port: number;
  /** Prefix on the preview URL that routes here (default '/'). */
  path: string;
  /** Path prefix the request is rewritten to before it reaches the machine, when given. */
  rewrite: string | undefined;
}

export type Instruction =
  | (Base & { kind: 'from'; source: FromSource })
  | (Base & { kind: 'run'; mode: RunMode; command: string })
  | (Base & { kind: 'copy'; sources: string[]; dest: string })
  | (Base & { kind: 'clone'; url: string; defaultBranch: string | undefined; sources: string[]; dest: string })
  | (Base & { kind: 'workdir'; dir: string })
  /** `value`: quotes removed, `$VAR` left as written (display). `raw`: as written; the engine expands it
   *  with `expandEnvValue(raw, env)` from env.ts, which knows `'$X'` is literal and `"$X"` is not. */
  | (Base & { kind: 'env'; vars: Array<{ name: string; value: string; raw: string }> })
  | (Base & { kind: 'buildEnv'; names: string[] })
  | (Base & { kind: 'secretEnv'; names: string[] })
  | (Base & { kind: 'cache'; dirs: string[] })
  | (Base & { kind: 'checkpoint'; mode: 'force' | 'disabled' | 'named'; name: string | undefined })
  | (Base & { kind: 'split'; count: number; unordered: boolean })
  | (Base & { kind: 'button'; message: string })
  | (Base & { kind: 'wait'; paths: string[] })
  | (Base & { kind: 'skipRemainingIf'; conditions: SkipCondition[] })
  | (Base & { kind: 'exposeWebsite'; target: ExposeWebsiteTarget })
  | (Base & { kind: 'exposeTcp'; port: number; dest: number })
  | (Base & { kind: 'memory'; bytes: number; text: string })
  | (Base & { kind: 'user'; name: string })
  | (Base & { kind: 'setupFile'; paths: string[] })
  | (Base & { kind: 'label'; entries: Array<{ key: 'display_name' | 'status'; value: string }> });

export type InstructionKind = Instruction['kind'];
export type InstructionOf<K extends InstructionKind> = Extract<Instruction, { kind: K }>;

/** A parsed Layerfile. `instructions[0]` is always the FROM when `errors` is empty. */
export interface Layerfile {
  /** Repo-relative path with forward slashes, e.g. `services/api/Layerfile`. */
  path: string;
  instructions: Instruction[];
}
