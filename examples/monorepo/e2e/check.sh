#!/bin/sh
# The e2e runner inherits only the base; it checks its own fixtures (the services ran on other runners).
set -eu
test -f /srv/app/BASE
grep -q hello /srv/e2e/expected.txt && echo "e2e passed"
