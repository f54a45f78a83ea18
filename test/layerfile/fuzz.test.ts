// Property test: 10 000 generated and mutated Layerfiles (seeded, so every run sees the same files).
// Each must yield instructions or LayerfileErrors, never another exception, and the results must hold
// their invariants: positions inside the file, a FROM first when there are no errors, and canonical
// texts that parse back to the same instructions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalEnvValue, LayerfileError, parseLayerfile } from '../../src/layerfile/index.js';
import type { Instruction } from '../../src/layerfile/index.js';
import { mulberry32 } from '../helpers/random.js';

const FILES = 10_000;
const SEED = 0x5eed1a7e;


const random = mulberry32(SEED);
const int = (n: number): number => Math.floor(random() * n);
const pick = <T>(items: readonly T[]): T => items[int(items.length)] as T;

/** A pool of choices: `ok` ones keep a line valid, `bad` ones may not. Strict files draw only `ok`. */
interface Pool { ok: readonly string[]; bad: readonly string[] }
let strict = false;
const choose = (pool: Pool): string => (strict || random() < 0.7 ? pick(pool.ok) : pick(pool.bad));
const several = (pool: Pool, min: number, max: number): string =>
  Array.from({ length: min + int(max - min + 1) }, () => choose(pool)).join(' ');

const PATHS: Pool = { ok: ['.', 'src', '/app/', '../base', 'a/b.txt', '"a b"', "'c d'", 'x#y', '~/.npm', 'dir/', 'a"b c"d', 'b\\c'], bad: ['""', '"open', "'"] };
const DIRS: Pool = { ok: ['/app/', 'dir/', '"a b/"', '/'], bad: ['dest', '#'] };
const NAMES: Pool = { ok: ['GIT_BRANCH', 'A', '_x1', 'NODE_ENV', 'TOKEN'], bad: ['bad-name', '1X', 'a=b'] };
const VALUES: Pool = { ok: ['1', '"two words"', "'$HOME'", '$PATH:/bin', '${HOME}', '\\$X', '""', 'a=b', '"a\\"b"', "'it''s'"], bad: ['"unterminated', '${BAD:-x}', '${'] };
const SHELL: Pool = { ok: ['echo hi', 'make test', 'cat file1 # comment', "echo 'a  b'", 'sleep 1 && true', 'ENV=1 env', '"quoted \\" cmd"', 'MAKE'], bad: ['BACKGROUN x', ''] };
const ADDRESS: Pool = { ok: ['localhost:8000', 'http://localhost:3000', 'https://localhost', '8080', 'localhost', 'http://localhost:9000/'], bad: ['ftp://x', ':80', 'localhost:0', 'localhost:70000', 'a/b', ''] };
const URL_PATHS: Pool = { ok: ['/', '/api', '/v1'], bad: ['api', '#x'] };
const CONDITION_VALUES: Pool = { ok: ['main', '"a b"', '^v\\d+', "''", 'x=y'], bad: ['[bad', '(', ' = x'] };
const one = (ok: string[], bad: string[]): string => choose({ ok, bad });

const DIRECTIVE_LINES: Array<() => string> = [
  () => `RUN ${choose(SHELL)}`,
  () => `RUN BACKGROUND ${choose(SHELL)}`,
  () => `RUN REPEATABLE ${choose(SHELL)}`,
  () => `COPY ${choose(PATHS)} ${choose(PATHS)}`,
  () => `COPY ${several(PATHS, 2, 3)} ${choose(DIRS)}`,
  () => `CLONE ${one(['https://x.org/r.git', 'git@h:r'], ['-bad'])} ${one(['', 'DEFAULT=main ', '"DEFAULT=x" '], ['DEFAULT=-x '])}${choose(PATHS)}`,
  () => `CLONE https://x.org/r.git ${several(PATHS, 2, 3)} ${choose(DIRS)}`,
  () => `WORKDIR ${several(PATHS, 1, strict ? 1 : 2)}`,
  () => `ENV ${Array.from({ length: 1 + int(3) }, () => `${choose(NAMES)}=${choose(VALUES)}`).join(' ')}`,
  () => `ENV ${choose(NAMES)} ${several(VALUES, 1, 3)}`,
  () => `BUILD ENV ${several(NAMES, 1, 3)}`,
  () => `SECRET ENV ${several(NAMES, 1, 2)}`,
  () => `CACHE ${several(PATHS, 1, 3)}`,
  () => `CHECKPOINT ${one(['', 'disabled', 'ready', 'v1.2_x-y'], ['DISABLED', 'a b', 'bad/name'])}`,
  () => `SPLIT ${one(['', 'UNORDERED '], ['unordered '])}${one(['1', '5', '1000', '007'], ['0', '1001', 'two', '-1', '3 4'])}`,
  () => `BUTTON ${one(['deploy?', 'ship "it"   now', "it's #1"], [''])}`,
  () => `WAIT ${several(PATHS, 1, 2)}`,
  () =>
    `SKIP REMAINING IF ${Array.from({ length: 1 + int(3) }, () => `${choose(NAMES)}${one(['=', '!=', '=~', '!=~'], [' = '])}${choose(CONDITION_VALUES)}`).join(one([' AND '], [' OR ', ' and ', ' ']))}`,
  () => `EXPOSE WEBSITE ${choose(ADDRESS)} ${several(URL_PATHS, 0, strict ? 2 : 3)}`,
  () => `EXPOSE TCP ${several({ ok: [':5432', '8080', ':16379'], bad: [':0', ':http'] }, 1, strict ? 2 : 3)}`,
  () => `USER ${one(['app', 'root', 'build.bot-2'], ['-x', 'a b', 'name@host', ''])}`,
  () => `SETUP FILE ${several(PATHS, 1, 2)}`,
  () => `LABEL ${several({ ok: ['display_name=x', 'display_name="a b"', 'status=merge', 'status=hidden'], bad: ['status=done', 'name=x', 'hidden'] }, 1, 3)}`,
  () => (strict ? 'RUN true' : pick(['RUNN echo', 'run echo', 'Copy a b', 'EXPOSE WEBSTIE 80', 'BUILDENV X', 'ADD . .', 'FROBNICATE', 'EXPOSE 80'])),
];

const FROMS: Pool = { ok: ['FROM vm/debian:12', 'FROM ../base', 'FROM /svc/base/Layerfile', 'FROM "../my base"'], bad: ['FROM vm/debian', 'FROM ubuntu:22.04', 'FROM', 'FROM a b'] };
const NOISE = ['\u0000', '\r', '\t', '\\', '"', "'", '#', ' ', 'é', '日', '😀', '\ud800', '\u00a0', '\ufeff', '$', '{', '=', '\n'];

function generate(): string {
  strict = random() < 0.5;
  const lines: string[] = [];
  if (random() < 0.3) lines.push(pick(['# comment', '', '   # indented']));
  if (strict || random() < 0.95) lines.push(choose(FROMS));
  if (random() < 0.2) lines.push(`MEMORY ${one(['2G', '512M', '1.5gb', '64KiB', '1.001K'], ['2048', '2T', '0G', ''])}`);
  const count = int(12);
  for (let i = 0; i < count; i++) {
    let line = pick(DIRECTIVE_LINES)();
    if (random() < 0.1) line = pick(['  ', '\t']) + line;
    if (random() < 0.1) line += pick(['  ', ' \t']);
    // Break the line at a blank into a continuation.
    const space = line.indexOf(' ', 1 + int(Math.max(1, line.length - 1)));
    if (random() < 0.15 && space > 0) line = `${line.slice(0, space)} \\${pick(['', '  '])}\n${pick(['', '  ', '  # note\n  '])}${line.slice(space + 1)}`;
    lines.push(line);
    if (random() < 0.1) lines.push(pick(['', '# comment', '  ']));
  }
  return lines.join(random() < 0.1 ? '\r\n' : '\n') + (random() < 0.8 ? '\n' : '');
}

function mutate(text: string): string {
  let lines = text.split('\n');
  const mutations = 1 + int(3);
  for (let m = 0; m < mutations; m++) {
    const at = int(lines.length);
    const line = lines[at] ?? '';
    switch (int(8)) {
      case 0: lines.splice(at, 1); break;
      case 1: lines.splice(at, 0, line); break;
      case 2: { const other = int(lines.length); lines[at] = lines[other] ?? ''; lines[other] = line; break; }
      case 3: { const pos = int(line.length + 1); lines[at] = line.slice(0, pos) + pick(NOISE) + line.slice(pos); break; }
      case 4: lines[at] = line.endsWith('\\') ? line.slice(0, -1) : `${line} \\`; break;
      case 5: lines[at] = line.slice(0, int(line.length + 1)); break;
      case 6: lines[at] = random() < 0.5 ? line.toLowerCase() : line.toUpperCase(); break;
      default: { const pos = int(line.length); lines[at] = line.slice(0, pos) + String.fromCharCode(int(0x3000)) + line.slice(pos + 1); break; }
    }
    if (lines.length === 0) lines = [''];
  }
  return lines.join('\n');
}

/**
 * Instructions without source positions and spelling (an ENV value's quotes, MEMORY's unit as written),
 * for comparing a file with its canonical rewrite: what is left is the meaning.
 */
function meaning(instructions: Instruction[]): unknown {
  return JSON.parse(
    JSON.stringify(
      instructions.map(({ range: _range, ...rest }) => {
        if (rest.kind === 'env') return { ...rest, vars: rest.vars.map((v) => ({ name: v.name, value: canonicalEnvValue(v.raw) })) };
        if (rest.kind === 'memory') return { ...rest, text: undefined };
        return rest;
      }),
    ),
  );
}

test('10 000 generated and mutated Layerfiles parse to instructions or LayerfileErrors', () => {
  let valid = 0;
  let withErrors = 0;
  for (let n = 0; n < FILES; n++) {
    const text = random() < 0.6 ? mutate(generate()) : generate();
    const file = `fuzz/${n}/Layerfile`;
    let result;
    try {
      result = parseLayerfile(text, file);
    } catch (error) {
      assert.fail(`parseLayerfile threw on file ${n} ${JSON.stringify(text)}: ${String(error)}`);
    }
    const physical = (text.startsWith('\uFEFF') ? text.slice(1) : text).split(/\r?\n/);
    for (const error of result.errors) {
      const where = `file ${n} ${JSON.stringify(text)}: ${error.message}`;
      assert.ok(error instanceof LayerfileError, where);
      assert.equal(error.code, 'STRATA_LAYERFILE_SYNTAX', where);
      assert.ok(error.line >= 1 && error.line <= physical.length, `line ${error.line} out of range in ${where}`);
      assert.equal(error.sourceLine, physical[error.line - 1], `sourceLine is not line ${error.line} in ${where}`);
      assert.ok(error.column >= 1 && error.column <= error.sourceLine.length + 1, `column ${error.column} out of range in ${where}`);
      assert.ok(error.format().startsWith(`${file}:${error.line}:${error.column}: `), where);
    }
    for (const instruction of result.layerfile.instructions) {
      const { line, endLine } = instruction.range;
      assert.ok(line >= 1 && endLine >= line && endLine <= physical.length, `bad range in file ${n}`);
    }
    if (result.errors.length > 0) {
      withErrors++;
      continue;
    }
    valid++;
    const kinds = result.layerfile.instructions.map((i) => i.kind);
    assert.equal(kinds[0], 'from', `file ${n} has no errors but does not start with FROM: ${JSON.stringify(text)}`);
    assert.equal(kinds.filter((k) => k === 'from').length, 1, `file ${n}`);
    // Canonical texts are themselves a Layerfile that parses to the same instructions.
    const canonical = result.layerfile.instructions.map((i) => i.canonical).join('\n');
    const reparsed = parseLayerfile(canonical, file);
    assert.deepEqual(reparsed.errors.map((e) => e.format()), [], `canonical text of file ${n} does not parse: ${JSON.stringify(text)}`);
    assert.deepEqual(meaning(reparsed.layerfile.instructions), meaning(result.layerfile.instructions), `file ${n}: ${JSON.stringify(text)}`);
  }
  console.log(`fuzz: ${FILES} Layerfiles, ${valid} valid, ${withErrors} with errors`);
  // The generator must exercise both sides, or the invariants above test little.
  assert.ok(valid > FILES / 20 && withErrors > FILES / 20, `unbalanced generator: ${valid} valid, ${withErrors} with errors`);
});
