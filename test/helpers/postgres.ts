// Debian's Postgres in a machine, as Layerfile lines: shared by the RUN BACKGROUND e2e tests and the
// directives benchmark, so both run the same recipe.
const PG_BIN = '/usr/lib/postgresql/15/bin';

/**
 * Installs Postgres without the package's own server: policy-rc.d keeps the install from starting it,
 * and its unit is disabled, since a system machine (like a VM) starts enabled units at every boot, and
 * a restore boots. The Layerfile runs the server itself, with RUN BACKGROUND.
 */
export const POSTGRES_INSTALL = `RUN printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && apt-get update -qq && apt-get install -y -qq postgresql >/dev/null && { ! command -v systemctl >/dev/null || systemctl disable -q postgresql; }`;

/** Runs the server in the background, in the foreground of its own command (so strata re-launches it). */
export const POSTGRES_BACKGROUND = `RUN BACKGROUND mkdir -p /run/postgresql && chown postgres:postgres /run/postgresql && exec su postgres -c '${PG_BIN}/postgres -D /var/lib/postgresql/15/main -c config_file=/etc/postgresql/15/main/postgresql.conf'`;

/** Waits until the server accepts connections, then applies the SQL file at `path` (prints "migrated"). */
export function postgresMigrate(path: string): string {
  return `RUN until pg_isready -q -U postgres; do sleep 0.2; done && cd / && su postgres -c "psql -q -v ON_ERROR_STOP=1" < ${path} && echo migrated`;
}
