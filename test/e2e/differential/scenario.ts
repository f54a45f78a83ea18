// Random repositories, Layerfiles and commits for the differential test. A scenario is a model of the
// repo (files with modes, symlinks) plus two Layerfiles — a parent at the root that copies the repo and
// a child (`FROM ..`) — whose RUN steps observe random paths in every way the tracer distinguishes
// (read, list, stat, probe, readlink) and sometimes write or delete. Every step writes what it saw into
// a digest file (/tmp/digest-<k>, /tmp/child-digest-<k>) and prints it. The model is written to a real
// work tree.
import { chmodSync, lstatSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, posix } from 'node:path';
import type { Random } from '../../helpers/random.js';

export type Entry = { type: 'file'; content: string; executable: boolean } | { type: 'symlink'; target: string };

export interface Scenario {
  /** Directories the repo may hold (the first ones exist initially; `extra` appears only through commits). */
  dirs: string[];
  /** Every path a file or symlink may ever have: the paths steps observe, existing or not. */
  pool: string[];
  /** The repo's files and symlinks, Layerfile excluded. */
  entries: Map<string, Entry>;
  /** Layerfile: FROM vm/debian:12, COPY . . (step 0), RUN commands (steps 1..n). */
  parent: LayerfileModel;
  /** child/Layerfile: FROM .., RUN commands (steps 0..m-1), BUILD ENV GIT_COMMIT, the state dump. */
  child: LayerfileModel;
}

export interface LayerfileModel {
  /** Repo path of the Layerfile. */
  path: string;
  /** Its runner id. */
  runner: string;
  /** The digest file of command k (1-based) is `${digestPrefix}${k}` in the machine. */
  digestPrefix: string;
  /** Step index of command 1. */
  firstStep: number;
  /** One shell command per RUN. */
  commands: string[];
  /** Comment lines inserted before command k (edits that must rerun nothing). */
  comments: Map<number, string>;
}

/** The step index of command k (1-based) of a Layerfile. */
export const stepIndex = (model: LayerfileModel, k: number): number => model.firstStep + k - 1;

const DIR_NAMES = ['src', 'lib', 'conf'];
const LATE_DIR = 'extra';
const FILE_NAMES = ['a.txt', 'b.txt', 'c.sh', 'd.json'];

/** A repo of 5-15 files in 1-3 directories (and the root); a parent of 3-6 observing steps, a child of 1-3. */
export function generateScenario(random: Random): Scenario {
  const dirs = random.sample(DIR_NAMES, random.int(1, 3));
  const pool = ['', ...dirs, LATE_DIR].flatMap((dir) => FILE_NAMES.map((name) => (dir ? `${dir}/${name}` : name)));
  const initial = pool.filter((path) => !path.startsWith(`${LATE_DIR}/`));
  const entries = new Map<string, Entry>();
  for (const path of random.sample(initial, random.int(5, Math.min(15, initial.length)))) {
    entries.set(path, { type: 'file', content: `${random.word()}\n`, executable: random.chance(0.2) });
  }
  // Some paths start as symlinks to files (relative targets, as a repo would hold them).
  for (const path of initial.filter((p) => !entries.has(p))) {
    if (!random.chance(0.15)) continue;
    const target = random.pick([...entries.keys()]);
    entries.set(path, { type: 'symlink', target: relativeTarget(path, target) });
  }
  const parent: LayerfileModel = { path: 'Layerfile', runner: 'main-layerfile', digestPrefix: '/tmp/digest-', firstStep: 1, commands: [], comments: new Map() };
  const child: LayerfileModel = { path: 'child/Layerfile', runner: 'child', digestPrefix: '/tmp/child-digest-', firstStep: 0, commands: [], comments: new Map() };
  const scenario: Scenario = { dirs, pool, entries, parent, child };
  for (const [model, count] of [[parent, random.int(3, 6)], [child, random.int(1, 3)]] as const) {
    for (let k = 1; k <= count; k++) model.commands.push(stepCommand(random, scenario, model, k));
  }
  return scenario;
}

function relativeTarget(linkPath: string, targetPath: string): string {
  return posix.relative(posix.dirname(linkPath) || '.', targetPath);
}

/** Paths a step looks at: mostly existing ones, sometimes ones that do not exist (yet). */
function observedPath(random: Random, scenario: Scenario): string {
  const existing = [...scenario.entries.keys()];
  return existing.length > 0 && random.chance(0.65) ? random.pick(existing) : random.pick(scenario.pool);
}

type Observation = 'cat' | 'ls' | 'stat' | 'probe' | 'readlink' | 'write' | 'delete';

/** One RUN command observing 2-4 things; its output (also kept in /tmp/digest-<k>) is what it saw. */
export function stepCommand(random: Random, scenario: Scenario, model: LayerfileModel, k: number): string {
  const parts: string[] = [`echo '${model.runner} step ${k}'`];
  const count = random.int(2, 4);
  for (let i = 0; i < count; i++) {
    const kind = random.weighted<Observation>([
      ['cat', 3],
      ['ls', 2],
      ['stat', 2],
      ['probe', 2],
      ['readlink', 1],
      ['write', 0.6],
      ['delete', 0.3],
    ]);
    const path = observedPath(random, scenario);
    switch (kind) {
      case 'cat':
        parts.push(`cat ${path} 2>/dev/null || echo 'no file ${path}'`);
        break;
      case 'ls': {
        const dir = random.pick(['.', ...scenario.dirs, LATE_DIR]);
        parts.push(`ls -A ${dir} 2>/dev/null || echo 'no dir ${dir}'`);
        break;
      }
      case 'stat':
        // Sizes of directories depend on the filesystem's history, not on what is in them: files only.
        parts.push(`stat -c '%n %F %a' ${path} 2>/dev/null && { test -d ${path} || stat -c '%s' ${path}; } || echo 'no stat ${path}'`);
        break;
      case 'probe':
        parts.push(`test -e ${path} && echo '${path} exists' || echo '${path} absent'`);
        break;
      case 'readlink':
        parts.push(`readlink ${path} || echo '${path} is no symlink'`);
        break;
      case 'write': {
        const dir = posix.dirname(path);
        parts.push(`{ mkdir -p ${dir} && echo 'written by step ${k}' > ${path}; } 2>/dev/null || echo 'cannot write ${path}'`);
        break;
      }
      case 'delete':
        parts.push(`rm -f ${path} 2>/dev/null; echo 'deleted ${path}'`);
        break;
    }
  }
  return `{ ${parts.join('; ')}; } 2>&1 | tee ${model.digestPrefix}${k}`;
}

/**
 * The Layerfiles' text. The child ends with BUILD ENV GIT_COMMIT and a RUN that prints every digest
 * and the copied tree: that step runs on every commit (its key changes with the commit), inside the
 * restored machine, so it shows the effects of cached steps of both Layerfiles too.
 */
export function layerfileTexts(scenario: Scenario): Record<string, string> {
  const runs = (model: LayerfileModel): string[] =>
    model.commands.flatMap((command, index) => {
      const comment = model.comments.get(index + 1);
      return comment === undefined ? [`RUN ${command}`] : [comment, `RUN ${command}`];
    });
  const { parent, child } = scenario;
  return {
    [parent.path]: ['FROM vm/debian:12', 'COPY . .', ...runs(parent)].join('\n') + '\n',
    [child.path]: ['FROM ..', ...runs(child), 'BUILD ENV GIT_COMMIT', `RUN ${DUMP_COMMAND}`].join('\n') + '\n',
  };
}

/** Step index of the child's state dump. */
export const dumpStep = (scenario: Scenario): number => scenario.child.commands.length + 1;

export const DUMP_COMMAND = [
  'for f in /tmp/digest-* /tmp/child-digest-*; do echo "== $f"; cat "$f"; done',
  "echo '== tree'",
  "find . -mindepth 1 -printf '%p %y %m %l\\n' | LC_ALL=C sort",
  "echo '== content'",
  'find . -type f -exec md5sum {} + | LC_ALL=C sort -k2',
].join('; ');

/** A change to make in one commit, described for failure messages. */
export interface Mutation {
  description: string;
  apply(scenario: Scenario): void;
}

/** 1-3 random changes to files (modify, add, delete, chmod, symlink new or retargeted); sometimes also a Layerfile edit. */
export function randomMutations(random: Random, scenario: Scenario): Mutation[] {
  const mutations: Mutation[] = [];
  const count = random.int(1, 3);
  for (let i = 0; i < count; i++) mutations.push(randomFileMutation(random, scenario));
  if (random.chance(0.3)) mutations.push(randomLayerfileMutation(random, scenario));
  return mutations;
}

function randomFileMutation(random: Random, scenario: Scenario): Mutation {
  const mutation = pickFileMutation(random, scenario);
  mutation.apply(scenario); // later mutations of the same commit see the earlier ones
  return mutation;
}

function pickFileMutation(random: Random, scenario: Scenario): Mutation {
  const files = [...scenario.entries].filter(([, e]) => e.type === 'file').map(([p]) => p);
  const symlinks = [...scenario.entries].filter(([, e]) => e.type === 'symlink').map(([p]) => p);
  const free = scenario.pool.filter((p) => !scenario.entries.has(p));
  const kind = random.weighted([
    ['modify', files.length > 0 ? 3 : 0],
    ['add', free.length > 0 ? 2 : 0],
    ['delete', scenario.entries.size > 2 ? 2 : 0],
    ['chmod', files.length > 0 ? 1.5 : 0],
    ['symlink', free.length > 0 || symlinks.length > 0 ? 1.5 : 0],
  ] as const);
  switch (kind) {
    case 'modify': {
      const path = random.pick(files);
      const content = `${random.word()}\n`;
      return { description: `modify ${path}`, apply: (s) => s.entries.set(path, { ...(s.entries.get(path) as Entry & { type: 'file' }), content }) };
    }
    case 'add': {
      const path = random.pick(free);
      const entry: Entry = { type: 'file', content: `${random.word()}\n`, executable: random.chance(0.2) };
      return { description: `add ${path}`, apply: (s) => s.entries.set(path, entry) };
    }
    case 'delete': {
      const path = random.pick([...scenario.entries.keys()]);
      return { description: `delete ${path}`, apply: (s) => s.entries.delete(path) };
    }
    case 'chmod': {
      const path = random.pick(files);
      const entry = scenario.entries.get(path) as Entry & { type: 'file' };
      const executable = !entry.executable;
      return { description: `chmod ${executable ? '+x' : '-x'} ${path}`, apply: (s) => s.entries.set(path, { ...entry, executable }) };
    }
    case 'symlink': {
      // A new link, or a retargeted one; the target may be missing (a dangling link).
      const path = symlinks.length > 0 && (free.length === 0 || random.chance(0.5)) ? random.pick(symlinks) : random.pick(free);
      const targetPath = random.pick(scenario.pool.filter((p) => p !== path));
      const target = relativeTarget(path, targetPath);
      return { description: `symlink ${path} -> ${target}`, apply: (s) => s.entries.set(path, { type: 'symlink', target }) };
    }
  }
}

/** A new command for one step (it must rerun from there), or a comment line (nothing may rerun). */
function randomLayerfileMutation(random: Random, scenario: Scenario): Mutation {
  const mutation = pickLayerfileMutation(random, scenario);
  mutation.apply(scenario);
  return mutation;
}

function pickLayerfileMutation(random: Random, scenario: Scenario): Mutation {
  const model = random.pick([scenario.parent, scenario.child]);
  switch (random.pick(['edit-step', 'comment'] as const)) {
    case 'edit-step': {
      const k = random.int(1, model.commands.length);
      const command = stepCommand(random, scenario, model, k);
      return { description: `${model.path}: new command ${k}`, apply: () => (model.commands[k - 1] = command) };
    }
    case 'comment': {
      const before = random.int(1, model.commands.length);
      const comment = `# ${random.word(8)}`;
      return { description: `${model.path}: comment before command ${before}`, apply: () => model.comments.set(before, comment) };
    }
  }
}

/** Makes the work tree at `dir` hold exactly the scenario (Layerfile included); paths outside the pool are left alone. */
export function writeScenario(dir: string, scenario: Scenario): void {
  for (const [path, text] of Object.entries(layerfileTexts(scenario))) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  for (const path of scenario.pool) {
    const full = join(dir, path);
    const entry = scenario.entries.get(path);
    if (existsNoFollow(full)) rmSync(full, { force: true });
    if (!entry) continue;
    mkdirSync(dirname(full), { recursive: true });
    if (entry.type === 'symlink') {
      symlinkSync(entry.target, full);
    } else {
      writeFileSync(full, entry.content);
      chmodSync(full, entry.executable ? 0o755 : 0o644);
    }
  }
}

function existsNoFollow(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** The scenario as text, for failure messages. */
export function describeScenario(scenario: Scenario): string {
  const entries = [...scenario.entries]
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([path, e]) => (e.type === 'symlink' ? `  ${path} -> ${e.target}` : `  ${path}${e.executable ? ' (+x)' : ''}: ${JSON.stringify(e.content)}`));
  const layerfiles = Object.entries(layerfileTexts(scenario)).map(([path, text]) => `${path}:\n${text}`);
  return `files:\n${entries.join('\n')}\n${layerfiles.join('')}`;
}
