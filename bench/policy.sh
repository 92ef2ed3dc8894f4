#!/usr/bin/env bash
# policy.sh - run bench/policy_bench and bench/jwt_bench (built by `make build`): six-policy
# chain overhead, in-memory limiter decisions per second, JWT HS256 sign/verify per second.  BENCH_CALLS sets the calls per round.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/${BUILD:-build}/bench/policy_bench"
[ -x "$bin" ] || { echo "policy.sh: $bin not built (run make build)" >&2; exit 1; }
echo "keel policy benchmark"
echo "date:    $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), Linux $(uname -r)"
"$bin"
"$(dirname "$bin")/jwt_bench"
