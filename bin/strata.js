#!/usr/bin/env node
// Thin launcher: the CLI lives in src/cli and is compiled to dist/ by `npm run build`.
import { main } from '../dist/cli/main.js';
main(process.argv).then((code) => { process.exitCode = code; });
