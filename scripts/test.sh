#!/usr/bin/env bash
# The README's test command: install what is missing (idempotent), then run the whole suite on strata's
# Node.js runtime.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. scripts/node.sh
strata_use_node
npm test -- "$@"
