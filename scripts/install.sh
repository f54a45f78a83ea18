#!/usr/bin/env bash
# Installs everything strata needs on a Debian 12 machine, idempotently: system packages, npm
# dependencies, native helpers, the compiled CLI. Safe to run again; does only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "strata install: must run as root (it installs Debian packages and uses btrfs, namespaces and cgroups)." >&2
  echo "  hint: sudo bash scripts/install.sh" >&2
  exit 1
fi

# Debian packages the engine uses at run time and to build its native helpers.
PACKAGES=(
  btrfs-progs      # snapshot store
  runc             # sandbox runtime
  mmdebstrap       # base images from Debian's archive
  debootstrap
  fuse3 libfuse3-dev pkg-config  # tracing filesystem
  slirp4netns      # user-mode networking for machines
  iproute2 iptables
  uidmap psmisc procps util-linux
  git build-essential ca-certificates
  sqlite3
  chromium         # the web UI's browser tests (driven by playwright-core)
  python3 make g++ # node-gyp for native npm addons (node-pty)
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

# npm dependencies: reinstall only when the lockfile changed since the last install.
stamp=node_modules/.strata-lock-sha
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "strata install: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi

# Native helpers (C), if any are present.
if [ -f native/Makefile ]; then
  make -s -C native
fi

npm run -s build

# The vm/debian:12 base image, built once per host from Debian's archive (~30 s) into the host cache,
# so the first run and the tests do not each wait for it.
node --input-type=module -e "
  const { ensureImageTar } = await import('./dist/images/ensure.js');
  const { tarPath } = await ensureImageTar('vm/debian:12', { onProgress: (p) => console.log('strata install: ' + p.image + ': ' + p.message) });
  console.log('strata install: base image vm/debian:12 ready (' + tarPath + ')');
"
echo "strata install: ok"
