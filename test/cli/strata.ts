// The CLI as a process, for tests: same entry as bin/strata.js, but on the TypeScript sources (via tsx).
import { main } from '../../src/cli/main.js';

process.exitCode = await main(process.argv);
