#!/usr/bin/env bash
# bench/store.sh - keel's store interface (keel_db_prepare/bind/step) against the
# engines' raw C APIs (sqlite3_*, libpq), single-row INSERT and primary-key SELECT.
#
# Builds nothing: runs $BUILD/bench/store_bench under scripts/with-services.sh,
# which starts a throwaway PostgreSQL (and Redis) for the run and stops it
# afterwards, so both engines are measured.  Target: keel within 10 % of raw.
#
#   bench/store.sh                       # from anywhere, after `make build`
#   BENCH_ROWS=2000 bench/store.sh       # quick check
#   BENCH_NO_SERVICES=1 bench/store.sh   # SQLite only (no PostgreSQL started)
#
# Environment (all optional):
#   BUILD              build directory holding bench/store_bench (default: build)
#   STORE_BENCH        the binary (default: $BUILD/bench/store_bench)
#   BENCH_ROWS         rows / lookups per run, both engines (default 20000 SQLite,
#                      5000 PostgreSQL)
#   BENCH_NO_SERVICES  1: do not start PostgreSQL; its section is skipped unless
#                      KEEL_TEST_PG_DSN is already set
#   TMPDIR             where the SQLite database's temporary directory goes (/tmp)
#
# Exits 0 whatever the numbers (a measurement, not a test); exits 1 when the
# benchmark or the services fail to start or run.
set -euo pipefail
export LC_ALL=C

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$BENCH_DIR/lib.sh"

BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
STORE_BENCH=${STORE_BENCH:-$BUILD/bench/store_bench}
BENCH_NO_SERVICES=${BENCH_NO_SERVICES:-0}

if [ -n "${BENCH_ROWS:-}" ]; then
  if ! bench_is_uint "$BENCH_ROWS" || [ "$BENCH_ROWS" -lt 1 ]; then
    bench_die "BENCH_ROWS must be a whole number >= 1, got '$BENCH_ROWS'"
  fi
fi
[ -x "$STORE_BENCH" ] ||
  bench_die "store_bench not found at '$STORE_BENCH' (build it first: make build, or cmake --build $BUILD --target store_bench)"

echo "keel store benchmark: single-row INSERT and primary-key SELECT, keel vs raw C API"
echo "date:    $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "machine: $(nproc) CPUs, $(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(uname -sr)"
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min load average before the runs)"
echo "disk:    $(df -hT "${TMPDIR:-/tmp}" 2>/dev/null | awk 'NR == 2 { print $2 " at " $7 " (" $1 ")" }') holds the SQLite file"
echo "binary:  $STORE_BENCH"

if [ "$BENCH_NO_SERVICES" = 1 ]; then
  exec "$STORE_BENCH"
fi
command -v pg_ctl >/dev/null 2>&1 || ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 ||
  bench_die "PostgreSQL not installed (scripts/deps.sh services installs it; BENCH_NO_SERVICES=1 runs SQLite only)"
exec "$ROOT/scripts/with-services.sh" "$STORE_BENCH"
