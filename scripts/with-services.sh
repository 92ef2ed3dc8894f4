#!/usr/bin/env bash
# with-services.sh CMD... - run CMD with throwaway PostgreSQL and Redis servers
# (scripts/test-services.sh) and an S3-compatible server (scripts/s3-server.sh, s3rver)
# started for it and stopped afterwards, whatever CMD does.
# The servers get their own directory, so several runs never share or stop each
# other's servers.  CMD sees KEEL_TEST_PG_DSN, KEEL_TEST_REDIS_URL and KEEL_TEST_S3_*.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
KEEL_SERVICES_DIR=$(mktemp -d /tmp/keel-services.XXXXXX)
export KEEL_SERVICES_DIR
trap '"$root/scripts/s3-server.sh" stop; "$root/scripts/test-services.sh" stop' EXIT
eval "$("$root/scripts/test-services.sh" start)"
eval "$("$root/scripts/s3-server.sh" start)"
"$@"
