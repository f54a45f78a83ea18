// The `strata` command line. Thin: each command lazily imports the engine code it needs.
import { Command, CommanderError } from 'commander';
import { isStrataError, type StrataErrorCode } from '../errors.js';

const EXIT_CODES: Partial<Record<StrataErrorCode, number>> = {
  STRATA_USAGE: 2,
  STRATA_LAYERFILE_SYNTAX: 3,
  STRATA_LAYERFILE_GRAPH: 3,
};

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('strata')
    .description('Run Layerfiles: whole-machine CI pipelines with per-step snapshots and read-traced caching.')
    .exitOverride();
  program
    .command('check [dir]')
    .description('Parse every Layerfile in a repo and show the DAG, runner ids, steps and errors (runs nothing).')
    .option('--json', 'print one JSON document instead of text')
    .action(async (dir: string | undefined, options: { json?: boolean }) => {
      const { checkCommand } = await import('./commands/check.js');
      process.exitCode = await checkCommand(dir ?? '.', options);
    });
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode;
    if (isStrataError(error)) {
      process.stderr.write(`strata: ${error.message}\n`);
      if (error.hint) process.stderr.write(`  hint: ${error.hint}\n`);
      return EXIT_CODES[error.code] ?? 1;
    }
    throw error;
  }
}
