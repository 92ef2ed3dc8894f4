#!/usr/bin/env bash
# policy.sh - run bench/policy_bench and bench/jwt_bench (built by `make build`): six-policy
# chain overhead, in-memory limiter decisions per second, JWT HS256 sign/verify per second.  BENCH_CALLS sets the calls per round.
# Then bench/redis_limiter_bench: Redis limiter decisions/s from 1 and 2 threads and the PING
# RTT, against KEEL_TEST_REDIS_URL, or a throwaway server (scripts/test-services.sh, in its own
# KEEL_SERVICES_DIR, stopped on exit) when that is unset.  BENCH_REDIS_CALLS sets its calls.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/${BUILD:-build}/bench/policy_bench"
[ -x "$bin" ] || { echo "policy.sh: $bin not built (run make build)" >&2; exit 1; }
echo "keel policy benchmark"
echo "date:    $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), Linux $(uname -r)"
"$bin"
"$(dirname "$bin")/jwt_bench"
if [ -z "${KEEL_TEST_REDIS_URL:-}" ]; then
  export KEEL_SERVICES_DIR="/tmp/keel-bench-services.$(id -u).$$"
  trap '"$root/scripts/test-services.sh" stop >/dev/null 2>&1 || true' EXIT
  eval "$("$root/scripts/test-services.sh" start)"
fi
"$(dirname "$bin")/redis_limiter_bench"
