#!/usr/bin/env bash
# The README's main job: runs the bundled seed example (examples/seed) as a real git repo, twice across
# a commit, so the second run shows cached and rerun steps, then `strata why` explains the reruns.
# Uses its own store (default /var/lib/strata-demo) so it never mixes with your runs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/node.sh
strata_use_node
strata="node $(pwd)/bin/strata.js"
store="${STRATA_DEMO_STORE:-/var/lib/strata-demo}"
repo="$(mktemp -d /tmp/strata-demo-XXXXXX)"
trap 'rm -rf "$repo"' EXIT

cp -r examples/seed/. "$repo/"
git -C "$repo" init -q -b main
git -C "$repo" -c user.name=strata -c user.email=demo@strata.invalid add -A
git -C "$repo" -c user.name=strata -c user.email=demo@strata.invalid commit -qm "seed example"

echo "== run 1: a fresh repository (every step runs)"
$strata run --store "$store" --commit HEAD "$repo"

echo
echo "== commit: edit file2 (only the step that read it reruns)"
echo "file2, edited" > "$repo/file2"
git -C "$repo" -c user.name=strata -c user.email=demo@strata.invalid commit -qam "edit file2"
$strata run --store "$store" --commit HEAD "$repo"

echo
echo "== strata why"
$strata why --store "$store" "$repo"
