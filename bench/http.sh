#!/usr/bin/env bash
# bench/http.sh - keeld's GET /health/live against nginx serving the same body.
#
# Both servers get one pinned CPU (taskset) and wrk gets another.  One wrk
# core cannot saturate nginx, so req/s alone would compare the client, not the
# servers; the headline number is therefore requests per server CPU-second:
# requests completed / (utime+stime the server burned during the run).
#
#   bench/http.sh                          # from the repo root; `make bench`
#   BENCH_SECONDS=2 BENCH_RUNS=1 BENCH_WARMUP_SECONDS=1 bench/http.sh   # quick check
#
# Environment (all optional):
#   BUILD                 build directory holding keeld (default: build)
#   KEELD                 keeld binary (default: $BUILD/keeld)
#   NGINX, WRK            the nginx and wrk binaries
#   BENCH_SECONDS         length of each measured run (default 10)
#   BENCH_RUNS            measured runs per server (default 3)
#   BENCH_WARMUP_SECONDS  unmeasured warm-up run before them (default 5)
#   BENCH_CONNECTIONS     wrk -c (default 50)
#   BENCH_THREADS         wrk -t (default 1)
#   BENCH_SERVER_CPU      CPU the server is pinned to (default: first allowed)
#   BENCH_CLIENT_CPU      CPU wrk is pinned to (default: second allowed)
#   BENCH_TARGETS         servers to measure, in order (default "keeld nginx")
#   BENCH_KEEP=1          keep the temporary directory (logs, wrk reports)
#
# Exits 0 whatever the numbers (this is a measurement, not a test); exits 1
# when a server or wrk fails to start or run.
set -euo pipefail
export LC_ALL=C   # '.' decimals in printf, awk and sort

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$BENCH_DIR/lib.sh"

BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
KEELD=${KEELD:-$BUILD/keeld}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
WRK=${WRK:-$(command -v wrk || echo /usr/bin/wrk)}
BENCH_SECONDS=${BENCH_SECONDS:-10}
BENCH_RUNS=${BENCH_RUNS:-3}
BENCH_WARMUP_SECONDS=${BENCH_WARMUP_SECONDS:-5}
BENCH_CONNECTIONS=${BENCH_CONNECTIONS:-50}
BENCH_THREADS=${BENCH_THREADS:-1}
BENCH_TARGETS=${BENCH_TARGETS:-keeld nginx}
BENCH_KEEP=${BENCH_KEEP:-0}

# Targets printed next to the numbers.
TARGET_RATIO=0.7    # keeld/nginx requests per server CPU-second, at least
TARGET_P99_MS=1     # keeld p99 latency, at most
TARGET_RSS_MIB=16   # keeld VmRSS after the runs, at most

PATH_URL=/health/live
# Used for nginx only when keeld is not among the targets; otherwise nginx
# serves the very body keeld returned.
DEFAULT_BODY='{"data":{"status":"alive"},"meta":{"timestamp":"2025-01-01T00:00:00.000Z","success":true,"request_id":"00000000-0000-0000-0000-000000000000"}}'

# --- checks ------------------------------------------------------------------

for v in BENCH_SECONDS BENCH_RUNS BENCH_WARMUP_SECONDS BENCH_CONNECTIONS BENCH_THREADS; do
  bench_is_uint "${!v}" || bench_die "$v must be a whole number, got '${!v}'"
done
[ "$BENCH_SECONDS" -ge 1 ] || bench_die "BENCH_SECONDS must be at least 1"
[ "$BENCH_RUNS" -ge 1 ] || bench_die "BENCH_RUNS must be at least 1"
[ "$BENCH_CONNECTIONS" -ge "$BENCH_THREADS" ] || bench_die "BENCH_CONNECTIONS must be >= BENCH_THREADS"
for t in $BENCH_TARGETS; do
  case "$t" in keeld | nginx) ;; *) bench_die "unknown target '$t' in BENCH_TARGETS (known: keeld nginx)" ;; esac
done
for tool in curl taskset pgrep getconf awk; do
  command -v "$tool" >/dev/null 2>&1 || bench_die "$tool not found (scripts/deps.sh bench installs it)"
done
[ -x "$WRK" ] || bench_die "wrk not found at '$WRK' (scripts/deps.sh bench installs it)"
case " $BENCH_TARGETS " in *" nginx "*)
  [ -x "$NGINX" ] || bench_die "nginx not found at '$NGINX' (scripts/deps.sh bench installs it)" ;;
esac
case " $BENCH_TARGETS " in *" keeld "*)
  [ -x "$KEELD" ] || bench_die "keeld not found at '$KEELD' (build it first: make build)" ;;
esac

CLK_TCK=$(getconf CLK_TCK)
mapfile -t ALLOWED_CPUS < <(bench_allowed_cpus)
[ ${#ALLOWED_CPUS[@]} -ge 1 ] || ALLOWED_CPUS=(0)
SERVER_CPU=${BENCH_SERVER_CPU:-${ALLOWED_CPUS[0]}}
if [ ${#ALLOWED_CPUS[@]} -ge 2 ]; then
  CLIENT_CPU=${BENCH_CLIENT_CPU:-${ALLOWED_CPUS[1]}}
else
  CLIENT_CPU=${BENCH_CLIENT_CPU:-${ALLOWED_CPUS[0]}}
fi
if [ "$SERVER_CPU" = "$CLIENT_CPU" ]; then
  bench_warn "server and wrk share CPU $SERVER_CPU (fewer than 2 CPUs allowed); req/s will be low, req per CPU-second still compares"
fi

# --- temporary directory and cleanup -------------------------------------------

TMP=$(mktemp -d "${TMPDIR:-/tmp}/keel-bench.XXXXXX")
SERVER_PIDS=()
STARTED_PID=
WRK_PID=

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local pid i alive
  if [ -n "$WRK_PID" ]; then
    kill -TERM "$WRK_PID" 2>/dev/null || true
  fi
  for pid in "${SERVER_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for i in $(seq 1 30); do
    alive=0
    for pid in "${SERVER_PIDS[@]}"; do
      if kill -0 "$pid" 2>/dev/null; then alive=1; fi
    done
    [ "$alive" -eq 1 ] || break
    sleep 0.1
  done
  for pid in "${SERVER_PIDS[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if [ "$BENCH_KEEP" = 1 ]; then
    echo "bench: kept $TMP" >&2
  else
    rm -rf "$TMP"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# stop_server PID: TERM, wait up to 3 s, then KILL; forget the PID.
stop_server() {
  local pid=$1 i keep=()
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 30); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for i in "${SERVER_PIDS[@]}"; do
    [ "$i" = "$pid" ] || keep+=("$i")
  done
  SERVER_PIDS=("${keep[@]+"${keep[@]}"}")
}

# --- servers -------------------------------------------------------------------

# A random hex string for throwaway secrets.
rand_hex() {
  od -An -N32 -tx1 /dev/urandom | tr -d ' \n'
}

# start_keeld DIR PORT: start keeld pinned to SERVER_CPU; its pid goes to
# STARTED_PID (not printed: a server started inside $(...) would not be our
# child).
start_keeld() {
  local dir=$1 port=$2
  mkdir -p "$dir/logs" "$dir/var"
  (
    cd "$dir"
    # Production so the console and the access log are what a deployment
    # writes; the secrets production may insist on get throwaway values
    # unless the caller set them.
    export HOST=127.0.0.1 PORT="$port" LOG_DIR="$dir/logs" ENVIRONMENT=production LOG_LEVEL=info
    # The access log goes to LOG_DIR/app.json; the JSON console copy of every record is off
    # unless BENCH_LOG_CONSOLE asks for it (auto = JSON on stderr in production).
    export LOG_CONSOLE="${BENCH_LOG_CONSOLE:-off}"
    export ACCESS_TOKEN_SIGNING_KEY="${ACCESS_TOKEN_SIGNING_KEY:-$(rand_hex)}"
    export REFRESH_TOKEN_SIGNING_KEY="${REFRESH_TOKEN_SIGNING_KEY:-$(rand_hex)}"
    export WEBHOOK_SECRET="${WEBHOOK_SECRET:-$(rand_hex)}"
    exec taskset -c "$SERVER_CPU" "$KEELD"
  ) </dev/null >"$dir/stdout.log" 2>"$dir/stderr.log" &
  STARTED_PID=$!
}

# nginx_conf DIR PORT BODYFILE: write DIR/nginx.conf.
nginx_conf() {
  local dir=$1 port=$2 body user_line='' temp_lines='' m
  # Inside nginx's single-quoted string: \ and ' are escaped, a newline
  # becomes \n; '$' would start a variable and cannot be escaped, so it is
  # replaced by '_' (same length).
  body=$(sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g" -e 's/\$/_/g' "$3" | awk 'NR > 1 { printf "\\n" } { printf "%s", $0 }')
  # awk cannot see a final newline; keep the length exact.
  if tail -c 1 "$3" | grep -q '^$'; then
    body="$body\\n"
  fi
  if [ "$(id -u)" -eq 0 ]; then
    # As root nginx would switch its worker to "nobody"; keep the caller.
    user_line="user $(id -un) $(id -gn);"
  fi
  mkdir -p "$dir/temp"
  temp_lines="client_body_temp_path $dir/temp/client_body;"
  for m in proxy fastcgi uwsgi scgi; do
    if ! "$NGINX" -V 2>&1 | grep -q -- "--without-http_${m}_module"; then
      temp_lines="$temp_lines
    ${m}_temp_path $dir/temp/$m;"
    fi
  done
  cat >"$dir/nginx.conf" <<EOF
# Generated by bench/http.sh: the nginx baseline for GET $PATH_URL.
worker_processes 1;
daemon off;
master_process on;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
$user_line

events {
    worker_connections 1024;
}

http {
    access_log off;
    $temp_lines
    # Measure steady keep-alive serving: no reconnect every 1000 requests
    # (nginx's default), which would bill nginx for wrk's reconnects.
    keepalive_requests 1000000;

    server {
        listen 127.0.0.1:$port;
        server_name localhost;

        location = $PATH_URL {
            default_type application/json;
            return 200 '$body';
        }
    }
}
EOF
}

# start_nginx DIR PORT BODYFILE: start nginx pinned to SERVER_CPU; the
# master's pid goes to STARTED_PID.
start_nginx() {
  local dir=$1 port=$2
  mkdir -p "$dir"
  nginx_conf "$dir" "$port" "$3"
  (
    cd "$dir"
    exec taskset -c "$SERVER_CPU" "$NGINX" -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log"
  ) </dev/null >"$dir/stdout.log" 2>"$dir/stderr.log" &
  STARTED_PID=$!
}

# server_pids PID: the pids whose CPU time counts for a server: the process
# and its direct children (nginx's master plus its worker; keeld has threads,
# which its own /proc/<pid>/stat already covers, and should have no children).
server_pids() {
  echo "$1"
  bench_children "$1"
}

# --- measuring -----------------------------------------------------------------

# run_wrk SECONDS URL OUTFILE: wrk pinned to CLIENT_CPU.  Run in the
# background and waited for, so a signal to this script is handled at once
# (bash defers traps while a foreground child runs) and cleanup can stop it.
run_wrk() {
  local rc=0
  taskset -c "$CLIENT_CPU" "$WRK" -t"$BENCH_THREADS" -c"$BENCH_CONNECTIONS" -d"$1"s --latency "$2" \
    </dev/null >"$3" 2>&1 &
  WRK_PID=$!
  wait "$WRK_PID" || rc=$?
  WRK_PID=
  return "$rc"
}

# Results per target, filled by measure().
declare -A MED_RPS MED_P99 MED_CPU MED_RPC RSS_KIB

# measure TARGET: start the server, warm up, run BENCH_RUNS measured runs,
# print a row per run and the medians, record the medians, stop the server.
measure() {
  local target=$1 dir=$TMP/$1 port='' pid='' url pids t0 t1 run f
  local rps p99 p99ms reqs cpu rpc non2xx sockerr hdr_bytes body_bytes c0 c1 other
  local -a a_rps=() a_p99=() a_cpu=() a_rpc=() a_other=()
  mkdir -p "$dir"

  for _ in 1 2 3; do
    port=$(bench_free_port) || bench_die "no free TCP port found"
    case "$target" in
      keeld) start_keeld "$dir" "$port" ;;
      nginx) start_nginx "$dir" "$port" "$TMP/body.json" ;;
    esac
    pid=$STARTED_PID
    SERVER_PIDS+=("$pid")
    url="http://127.0.0.1:$port$PATH_URL"
    if bench_wait_http "$url" "$pid" "$dir/first-body" 10; then
      break
    fi
    stop_server "$pid"
    pid=''
    # A port taken between choosing and binding: try another.  Anything
    # else: report it.
    if ! grep -qi 'in use' "$dir/stderr.log" "$dir/stdout.log" "$dir/error.log" 2>/dev/null; then
      break
    fi
  done
  if [ -z "$pid" ]; then
    echo "bench: $target did not answer GET $PATH_URL on 127.0.0.1:$port; its output:" >&2
    for f in "$dir/stderr.log" "$dir/stdout.log" "$dir/error.log"; do
      if [ -s "$f" ]; then
        echo "--- ${f#"$TMP"/} (last 20 lines)" >&2
        tail -n 20 "$f" >&2
      fi
    done
    bench_die "$target failed to start"
  fi

  # One request with headers, to show what each server puts on the wire.
  curl -sS -D "$dir/first-headers" -o "$dir/first-body" "$url" >/dev/null ||
    bench_die "$target stopped answering"
  hdr_bytes=$(wc -c <"$dir/first-headers")
  body_bytes=$(wc -c <"$dir/first-body")
  if [ "$target" = keeld ]; then
    cp "$dir/first-body" "$TMP/body.json"
  fi

  mapfile -t pids < <(server_pids "$pid")
  echo
  echo "== $target  pid ${pids[*]}  127.0.0.1:$port  server CPU $SERVER_CPU  wrk CPU $CLIENT_CPU"
  echo "   response: $hdr_bytes header bytes + $body_bytes body bytes"
  if [ "$BENCH_WARMUP_SECONDS" -gt 0 ]; then
    run_wrk "$BENCH_WARMUP_SECONDS" "$url" "$dir/wrk-warmup.txt" ||
      { cat "$dir/wrk-warmup.txt" >&2; bench_die "wrk failed against $target"; }
    echo "   warm-up: ${BENCH_WARMUP_SECONDS} s, $(bench_wrk_field "$dir/wrk-warmup.txt" rps) req/s"
  fi
  printf '   %-6s %12s %9s %13s %14s %14s\n' run req/s 'p99 ms' 'server CPU s' 'req/CPU-s' 'other CPU s'

  for run in $(seq 1 "$BENCH_RUNS"); do
    f=$dir/wrk-$run.txt
    # Re-read the worker list each run: nginx could have replaced a worker.
    mapfile -t pids < <(server_pids "$pid")
    c0=$(bench_core_busy_ticks "$SERVER_CPU") || bench_die "CPU $SERVER_CPU not in /proc/stat"
    t0=$(bench_cpu_ticks "${pids[@]}") || bench_die "$target exited"
    run_wrk "$BENCH_SECONDS" "$url" "$f" || { cat "$f" >&2; bench_die "wrk failed against $target"; }
    t1=$(bench_cpu_ticks "${pids[@]}") || bench_die "$target exited during run $run"
    c1=$(bench_core_busy_ticks "$SERVER_CPU") || bench_die "CPU $SERVER_CPU not in /proc/stat"

    rps=$(bench_wrk_field "$f" rps) || bench_die "cannot read Requests/sec from $f"
    reqs=$(bench_wrk_field "$f" requests) || bench_die "cannot read the request count from $f"
    p99=$(bench_wrk_field "$f" p99) || bench_die "cannot read the 99% latency from $f"
    p99ms=$(bench_to_ms "$p99") || bench_die "cannot parse latency '$p99'"
    non2xx=$(bench_wrk_field "$f" non2xx)
    sockerr=$(bench_wrk_field "$f" sockerr)
    cpu=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", d / hz }')
    # Time the server's CPU spent on anything but the server (wrk included
    # when they share a CPU); a large value means the run was disturbed.
    other=$(awk -v d=$(((c1 - c0) - (t1 - t0))) -v hz="$CLK_TCK" 'BEGIN { if (d < 0) d = 0; printf "%.2f", d / hz }')
    rpc=$(awk -v r="$reqs" -v d=$((t1 - t0)) -v hz="$CLK_TCK" 'BEGIN { if (d > 0) printf "%.0f", r * hz / d; else print "nan" }')

    printf '   %-6s %12s %9s %13s %14s %14s\n' "$run" "$rps" "$p99ms" "$cpu" "$rpc" "$other"
    if [ "$SERVER_CPU" != "$CLIENT_CPU" ] &&
      awk -v o="$other" -v s="$BENCH_SECONDS" 'BEGIN { exit !(o > 0.05 * s) }'; then
      bench_warn "$target run $run: CPU $SERVER_CPU spent $other s on other work; the machine is not idle, numbers are suspect"
    fi
    if [ "$non2xx" != 0 ] || [ "$sockerr" != 0 ]; then
      bench_warn "$target run $run: $non2xx non-2xx responses, $sockerr socket errors (see wrk report; numbers are suspect)"
    fi
    a_rps+=("$rps")
    a_p99+=("$p99ms")
    a_cpu+=("$cpu")
    a_other+=("$other")
    [ "$rpc" = nan ] || a_rpc+=("$rpc")
  done

  MED_RPS[$target]=$(printf '%.2f' "$(bench_median "${a_rps[@]}")")
  MED_P99[$target]=$(printf '%.3f' "$(bench_median "${a_p99[@]}")")
  MED_CPU[$target]=$(printf '%.2f' "$(bench_median "${a_cpu[@]}")")
  if [ ${#a_rpc[@]} -gt 0 ]; then
    MED_RPC[$target]=$(awk -v v="$(bench_median "${a_rpc[@]}")" 'BEGIN { printf "%.0f", v }')
  else
    MED_RPC[$target]=nan
  fi
  printf '   %-6s %12s %9s %13s %14s %14.2f\n' median "${MED_RPS[$target]}" "${MED_P99[$target]}" \
    "${MED_CPU[$target]}" "${MED_RPC[$target]}" "$(bench_median "${a_other[@]}")"

  mapfile -t pids < <(server_pids "$pid")
  RSS_KIB[$target]=$(bench_rss_kib "${pids[@]}") || bench_die "$target exited after the runs"
  echo "   RSS after the runs: $(awk -v k="${RSS_KIB[$target]}" 'BEGIN { printf "%.1f", k / 1024 }') MiB (VmRSS of pid ${pids[*]})"
  if [ "$target" = keeld ]; then
    echo "   log files written: $(du -sh "$dir/logs" 2>/dev/null | cut -f1) in LOG_DIR, $(wc -c <"$dir/stderr.log") bytes on stderr"
    # A server that drops its access log under load is cheaper per request: say so.
    local lm written dropped
    lm=$(curl -s "http://127.0.0.1:$port/metrics/keel_log_records" || true)
    written=$(awk '$1 == "keel_log_records_written_total" { print $2 }' <<<"$lm")
    dropped=$(awk '$1 == "keel_log_records_dropped_total" { print $2 }' <<<"$lm")
    echo "   log records: ${written:-?} written, ${dropped:-?} dropped (LOG_OVERFLOW=${LOG_OVERFLOW:-drop})"
    LOG_DROPPED=${dropped:-0}
    if [ "${dropped:-0}" != 0 ]; then
      echo "   WARNING: keeld dropped access-log records; its CPU figures are not comparable" >&2
    fi
  fi
  stop_server "$pid"
}

# verdict VALUE OP LIMIT: "ok" or "MISSED" (OP is >= or <=).
verdict() {
  awk -v v="$1" -v op="$2" -v lim="$3" 'BEGIN {
      if (v == "nan" || v == "") { print "n/a"; exit }
      ok = (op == ">=") ? (v + 0 >= lim + 0) : (v + 0 <= lim + 0)
      print ok ? "ok" : "MISSED"
    }'
}

# --- main ----------------------------------------------------------------------

echo "keel HTTP benchmark: GET $PATH_URL"
echo "date:    $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "machine: $(nproc) CPUs, $(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(uname -sr)"
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min load average before the runs)"
echo "tools:   $("$WRK" --version 2>&1 | awk 'NR == 1 { print $1, $2 }'), $("$NGINX" -v 2>&1 | sed 's/^nginx version: //')"
echo "client:  wrk -t$BENCH_THREADS -c$BENCH_CONNECTIONS, warm-up ${BENCH_WARMUP_SECONDS} s, then $BENCH_RUNS x ${BENCH_SECONDS} s"
case " $BENCH_TARGETS " in *" keeld "*) echo "keeld:   $KEELD" ;; esac

case " $BENCH_TARGETS " in *" keeld "*) ;; *) printf '%s' "$DEFAULT_BODY" >"$TMP/body.json" ;; esac
case " $BENCH_TARGETS " in
  *" nginx "*" keeld "*) bench_die "BENCH_TARGETS: keeld must come before nginx (nginx serves keeld's body)" ;;
esac
for t in $BENCH_TARGETS; do
  measure "$t"
done

echo
echo "== summary (medians)"
if [ -n "${MED_RPC[keeld]:-}" ] && [ -n "${MED_RPC[nginx]:-}" ]; then
  ratio=$(awk -v k="${MED_RPC[keeld]}" -v n="${MED_RPC[nginx]}" 'BEGIN {
      if (k == "nan" || n == "nan" || n + 0 == 0) print "nan"; else printf "%.2f", k / n }')
  printf '   %-42s %10s   target >= %-6s %s\n' "keeld/nginx requests per server CPU-s" \
    "$ratio" "$TARGET_RATIO" "$(verdict "$ratio" '>=' "$TARGET_RATIO")"
fi
for t in $BENCH_TARGETS; do
  printf '   %-42s %10s\n' "$t requests per server CPU-s" "${MED_RPC[$t]}"
  printf '   %-42s %10s\n' "$t req/s" "${MED_RPS[$t]}"
done
if [ -n "${MED_P99[keeld]:-}" ]; then
  printf '   %-42s %10s   target <= %-6s %s\n' "keeld p99 latency, ms" "${MED_P99[keeld]}" \
    "$TARGET_P99_MS" "$(verdict "${MED_P99[keeld]}" '<=' "$TARGET_P99_MS")"
  rss_mib=$(awk -v k="${RSS_KIB[keeld]}" 'BEGIN { printf "%.1f", k / 1024 }')
  printf '   %-42s %10s\n' "keeld access-log records dropped" "${LOG_DROPPED:-?}"
  printf '   %-42s %10s   target <= %-6s %s\n' "keeld RSS after the runs, MiB" "$rss_mib" \
    "$TARGET_RSS_MIB" "$(verdict "$rss_mib" '<=' "$TARGET_RSS_MIB")"
fi
if [ -n "${MED_P99[nginx]:-}" ]; then
  printf '   %-42s %10s\n' "nginx p99 latency, ms" "${MED_P99[nginx]}"
fi
exit 0
