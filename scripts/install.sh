#!/usr/bin/env bash
# Installs everything strata needs on a Debian 12 machine, idempotently: system packages, the Node.js
# runtime (when the host has none recent enough), npm dependencies, native helpers, the compiled CLI.
# Safe to run again; does only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/node.sh

if [ "$(id -u)" -ne 0 ]; then
  echo "strata install: must run as root (it installs Debian packages and uses btrfs, namespaces and cgroups)." >&2
  echo "  hint: sudo bash scripts/install.sh" >&2
  exit 1
fi

# Debian packages the engine uses at run time and to build its native helpers.
PACKAGES=(
  btrfs-progs      # snapshot store
  zstd             # snapshot streams between machines (btrfs send | zstd)
  runc             # sandbox runtime
  mmdebstrap       # base images from Debian's archive
  debootstrap
  fuse3 libfuse3-dev pkg-config  # tracing filesystem
  slirp4netns      # user-mode networking for machines
  iproute2 iptables
  uidmap psmisc procps util-linux
  git build-essential ca-certificates
  sqlite3
  postgresql-15    # the server's database when many machines share it; the tests start throwaway clusters
  chromium         # the web UI's browser tests (driven by playwright-core)
  python3 make g++ # node-gyp for native npm addons (node-pty, better-sqlite3)
  openssl curl     # webhook signatures and calls in tests
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "strata install: installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Node.js >= 24: the host's if recent enough, else the pinned one in /opt/strata/node (scripts/node.sh).
strata_ensure_node
echo "strata install: Node.js $(node --version) ($(command -v node))"

# npm dependencies: reinstall when the lockfile or the runtime changed since the last install (native
# addons are built for one Node ABI, against the headers of the runtime in use: node-gyp cannot download
# them on a host that reaches only the package registries).
stamp=node_modules/.strata-lock-sha
want="$(sha256sum package-lock.json | cut -d' ' -f1) node-$(node --version)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "strata install: npm ci"
  node_home="$(dirname "$(dirname "$(command -v node)")")"
  npm_config_nodedir="$node_home" npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi

# Native helpers (C), if any are present.
if [ -f native/Makefile ]; then
  make -s -C native
fi

npm run -s build

# `strata` on the PATH: this checkout's CLI on this runtime (replaces only a launcher of ours).
launcher=/usr/local/bin/strata
if [ ! -e "$launcher" ] || grep -q '^# strata launcher' "$launcher" 2>/dev/null; then
  printf '#!/bin/sh\n# strata launcher, written by scripts/install.sh\nexec %s %s "$@"\n' "$(command -v node)" "$(pwd)/bin/strata.js" > "$launcher.tmp"
  chmod 0755 "$launcher.tmp"
  mv "$launcher.tmp" "$launcher"
fi

# strata's lasting host set-up: the firewall rules that keep machines off the host's addresses and the
# parent cgroups of machines (src/sandbox/runc/hostSetup.ts; the first machine after a reboot remakes them).
node --input-type=module -e "await (await import('./dist/sandbox/runc/hostSetup.js')).prepareHost()"

# The vm/debian:12 base image, built once per host from Debian's archive (~30 s) into the host cache,
# so the first run and the tests do not each wait for it.
node --input-type=module -e "
  const { ensureImageTar } = await import('./dist/images/ensure.js');
  const { tarPath } = await ensureImageTar('vm/debian:12', { onProgress: (p) => console.log('strata install: ' + p.image + ': ' + p.message) });
  console.log('strata install: base image vm/debian:12 ready (' + tarPath + ')');
"
echo "strata install: ok"
