// `strata run [dir]`: run every Layerfile of the repo with the cache, showing live progress.
import { combineReporters, type Reporter } from '../../engine/reporter.js';
import { openEngine } from '../compose.js';
import { JsonReporter, TerminalReporter } from '../reporters/terminal.js';

export interface RunCommandOptions {
  commit?: string;
  store?: string;
  json?: boolean;
  plain?: boolean;
  cache?: boolean;
  acceptButtons?: boolean;
  /** false with --no-cache-dirs. */
  cacheDirs?: boolean;
  /** A dotenv-style file of SECRET ENV values; `STRATA_SECRET_<NAME>` variables fill in the rest. */
  secrets?: string;
}

export async function runCommand(dir: string, options: RunCommandOptions): Promise<number> {
  const { runRepository } = await import('../../engine/runRepository.js');
  const { loadSecrets } = await import('../../engine/secrets.js');
  // Read before the store is opened: an unreadable secrets file fails at once.
  const secrets = await loadSecrets({ file: options.secrets, env: process.env });
  const reporters: Reporter[] = options.json
    ? [new JsonReporter(process.stdout)]
    : [new TerminalReporter({ stream: process.stdout, plain: options.plain ?? false })];
  const engine = await openEngine({ store: options.store, reporter: combineReporters(...reporters) });
  try {
    const result = await runRepository(
      { repoDir: dir, commit: options.commit, noCache: options.cache === false, acceptButtons: options.acceptButtons ?? false, secrets, noCacheDirs: options.cacheDirs === false },
      engine.deps,
    );
    return result.status === 'success' ? 0 : 1;
  } finally {
    await engine.close();
  }
}
