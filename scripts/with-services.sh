#!/usr/bin/env bash
# with-services.sh CMD... - run CMD with throwaway PostgreSQL and Redis servers
# (scripts/test-services.sh) started for it and stopped afterwards, whatever CMD does.
# The servers get their own directory, so several runs never share or stop each
# other's servers.  CMD sees KEEL_TEST_PG_DSN and KEEL_TEST_REDIS_URL.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
KEEL_SERVICES_DIR=$(mktemp -d /tmp/keel-services.XXXXXX)
export KEEL_SERVICES_DIR
trap '"$root/scripts/test-services.sh" stop' EXIT
eval "$("$root/scripts/test-services.sh" start)"
"$@"
