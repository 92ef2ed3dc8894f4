#!/usr/bin/env bash
# bench/users_me.sh - keeld's authenticated GET /api/v1/users/me against nginx serving the
# same body as a static file, in the same run, with the protocol of bench/http.sh.
#
# The keeld request goes through the whole production chain: CORS, metrics, request id,
# access log (to a file), device info, security headers, the login/register rate-limit layer,
# the auth layer (Bearer parsing, HS256 JWT verification with the algorithm pinned, iss/aud/
# type/exp/nbf checks, session check through its cache), then the handler (a user row read
# from the embedded SQLite database).  A user is registered and logged in once before the
# runs; wrk sends the access token on every request.
#
# Both servers get one pinned CPU (taskset) and wrk another; the headline number is requests
# per server CPU-second (requests completed / utime+stime the server burned), and the ratio
# keeld/nginx (target >= 0.5, keel issue 5).
#
#   bench/users_me.sh                      # from the repo root; part of `make bench`
#   BENCH_SECONDS=2 BENCH_RUNS=1 BENCH_WARMUP_SECONDS=1 bench/users_me.sh   # quick check
#
# Environment (all optional): BUILD, KEELD, NGINX, WRK, BENCH_SECONDS (10), BENCH_RUNS (3),
# BENCH_WARMUP_SECONDS (5), BENCH_CONNECTIONS (50), BENCH_THREADS (1), BENCH_SERVER_CPU,
# BENCH_CLIENT_CPU, BENCH_KEEP=1 (keep the temporary directory) - as in bench/http.sh.
#
# Exits 0 whatever the numbers; 1 when a server or wrk fails to start or run.
set -euo pipefail
export LC_ALL=C

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
BENCH_KEEP=${BENCH_KEEP:-0}
TARGET_RATIO=0.5
PATH_URL=/api/v1/users/me

for v in BENCH_SECONDS BENCH_RUNS BENCH_WARMUP_SECONDS BENCH_CONNECTIONS BENCH_THREADS; do
  bench_is_uint "${!v}" || bench_die "$v must be a whole number, got '${!v}'"
done
[ "$BENCH_SECONDS" -ge 1 ] || bench_die "BENCH_SECONDS must be at least 1"
[ "$BENCH_RUNS" -ge 1 ] || bench_die "BENCH_RUNS must be at least 1"
for tool in curl taskset pgrep getconf awk; do
  command -v "$tool" >/dev/null 2>&1 || bench_die "$tool not found (scripts/deps.sh bench installs it)"
done
[ -x "$WRK" ] || bench_die "wrk not found at '$WRK' (scripts/deps.sh bench installs it)"
[ -x "$NGINX" ] || bench_die "nginx not found at '$NGINX' (scripts/deps.sh bench installs it)"
[ -x "$KEELD" ] || bench_die "keeld not found at '$KEELD' (build it first: make build)"

CLK_TCK=$(getconf CLK_TCK)
mapfile -t ALLOWED_CPUS < <(bench_allowed_cpus)
[ ${#ALLOWED_CPUS[@]} -ge 1 ] || ALLOWED_CPUS=(0)
SERVER_CPU=${BENCH_SERVER_CPU:-${ALLOWED_CPUS[0]}}
if [ ${#ALLOWED_CPUS[@]} -ge 2 ]; then
  CLIENT_CPU=${BENCH_CLIENT_CPU:-${ALLOWED_CPUS[1]}}
else
  CLIENT_CPU=${BENCH_CLIENT_CPU:-${ALLOWED_CPUS[0]}}
  bench_warn "server and wrk share CPU $SERVER_CPU; req/s will be low, req per CPU-second still compares"
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/keel-bench-me.XXXXXX")
SERVER_PIDS=()
WRK_PID=

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local pid
  [ -z "$WRK_PID" ] || kill -TERM "$WRK_PID" 2>/dev/null || true
  for pid in "${SERVER_PIDS[@]+"${SERVER_PIDS[@]}"}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  sleep 0.3
  for pid in "${SERVER_PIDS[@]+"${SERVER_PIDS[@]}"}"; do
    kill -KILL "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if [ "$BENCH_KEEP" = 1 ]; then echo "bench: kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rand_hex() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }

stop_server() {
  local pid=$1 keep=() i
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for i in "${SERVER_PIDS[@]}"; do [ "$i" = "$pid" ] || keep+=("$i"); done
  SERVER_PIDS=("${keep[@]+"${keep[@]}"}")
}

run_wrk() { # SECONDS URL OUTFILE [HEADER]
  local rc=0
  local -a hdr=()
  [ -z "${4:-}" ] || hdr=(-H "$4")
  taskset -c "$CLIENT_CPU" "$WRK" -t"$BENCH_THREADS" -c"$BENCH_CONNECTIONS" -d"$1"s --latency \
    "${hdr[@]}" "$2" </dev/null >"$3" 2>&1 &
  WRK_PID=$!
  wait "$WRK_PID" || rc=$?
  WRK_PID=
  return "$rc"
}

declare -A MED_RPS MED_RPC MED_P99

# measure NAME PID URL HEADER: warm-up, BENCH_RUNS measured runs, medians.
measure() {
  local name=$1 pid=$2 url=$3 header=$4 dir=$TMP/$1 run f t0 t1 reqs rps p99 cpu rpc non2xx
  local -a pids a_rps=() a_rpc=() a_p99=()
  mapfile -t pids < <(echo "$pid"; bench_children "$pid")
  echo
  echo "== $name  pid ${pids[*]}  server CPU $SERVER_CPU  wrk CPU $CLIENT_CPU"
  if [ "$BENCH_WARMUP_SECONDS" -gt 0 ]; then
    run_wrk "$BENCH_WARMUP_SECONDS" "$url" "$dir/wrk-warmup.txt" "$header" ||
      { cat "$dir/wrk-warmup.txt" >&2; bench_die "wrk failed against $name"; }
  fi
  printf '   %-6s %12s %9s %13s %14s\n' run req/s 'p99 ms' 'server CPU s' 'req/CPU-s'
  for run in $(seq 1 "$BENCH_RUNS"); do
    f=$dir/wrk-$run.txt
    mapfile -t pids < <(echo "$pid"; bench_children "$pid")
    t0=$(bench_cpu_ticks "${pids[@]}") || bench_die "$name exited"
    run_wrk "$BENCH_SECONDS" "$url" "$f" "$header" || { cat "$f" >&2; bench_die "wrk failed against $name"; }
    t1=$(bench_cpu_ticks "${pids[@]}") || bench_die "$name exited during run $run"
    rps=$(bench_wrk_field "$f" rps) || bench_die "cannot read Requests/sec from $f"
    reqs=$(bench_wrk_field "$f" requests) || bench_die "cannot read the request count from $f"
    p99=$(bench_to_ms "$(bench_wrk_field "$f" p99)") || bench_die "cannot read p99 from $f"
    non2xx=$(bench_wrk_field "$f" non2xx)
    cpu=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", d / hz }')
    rpc=$(awk -v r="$reqs" -v d=$((t1 - t0)) -v hz="$CLK_TCK" 'BEGIN { if (d > 0) printf "%.0f", r * hz / d; else print "nan" }')
    printf '   %-6s %12s %9s %13s %14s\n' "$run" "$rps" "$p99" "$cpu" "$rpc"
    [ "$non2xx" = 0 ] || bench_warn "$name run $run: $non2xx non-2xx responses (numbers are suspect)"
    a_rps+=("$rps")
    a_p99+=("$p99")
    [ "$rpc" = nan ] || a_rpc+=("$rpc")
  done
  MED_RPS[$name]=$(printf '%.2f' "$(bench_median "${a_rps[@]}")")
  MED_P99[$name]=$(printf '%.3f' "$(bench_median "${a_p99[@]}")")
  if [ ${#a_rpc[@]} -gt 0 ]; then
    MED_RPC[$name]=$(awk -v v="$(bench_median "${a_rpc[@]}")" 'BEGIN { printf "%.0f", v }')
  else
    MED_RPC[$name]=nan
  fi
  printf '   %-6s %12s %9s %13s %14s\n' median "${MED_RPS[$name]}" "${MED_P99[$name]}" '' "${MED_RPC[$name]}"
}

echo "keel users/me benchmark: authenticated GET $PATH_URL vs nginx static file"
echo "date:    $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "machine: $(nproc) CPUs, $(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(uname -sr)"
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg)"
echo "client:  wrk -t$BENCH_THREADS -c$BENCH_CONNECTIONS, warm-up ${BENCH_WARMUP_SECONDS} s, then $BENCH_RUNS x ${BENCH_SECONDS} s"

# --- keeld --------------------------------------------------------------------
KDIR=$TMP/keeld
mkdir -p "$KDIR/logs" "$KDIR/var"
PORT=$(bench_free_port) || bench_die "no free TCP port found"
(
  cd "$KDIR"
  export HOST=127.0.0.1 PORT LOG_DIR="$KDIR/logs" ENVIRONMENT=production LOG_LEVEL=info
  export LOG_CONSOLE="${BENCH_LOG_CONSOLE:-off}" ACCESS_TOKEN_EXPIRE_MINUTES=120
  export ACCESS_TOKEN_SIGNING_KEY="${ACCESS_TOKEN_SIGNING_KEY:-$(rand_hex)}"
  export REFRESH_TOKEN_SIGNING_KEY="${REFRESH_TOKEN_SIGNING_KEY:-$(rand_hex)}"
  export WEBHOOK_SECRET="${WEBHOOK_SECRET:-$(rand_hex)}"
  exec taskset -c "$SERVER_CPU" "$KEELD"
) </dev/null >"$KDIR/stdout.log" 2>"$KDIR/stderr.log" &
KPID=$!
SERVER_PIDS+=("$KPID")
BASE=http://127.0.0.1:$PORT
bench_wait_http "$BASE/health/live" "$KPID" "$KDIR/live" 15 ||
  { tail -n 20 "$KDIR/stderr.log" >&2; bench_die "keeld failed to start"; }
EMAIL="bench-$(rand_hex | cut -c1-12)@example.com"
curl -fsS -o /dev/null -H 'Content-Type: application/json' \
  -d "{\"email\":\"$EMAIL\",\"password\":\"bench password 1\",\"name\":\"Bench User\"}" \
  "$BASE/api/v1/auth/register" || bench_die "register failed"
TOKEN=$(curl -fsS -H 'Content-Type: application/json' \
  -d "{\"email\":\"$EMAIL\",\"password\":\"bench password 1\"}" "$BASE/api/v1/auth/login" |
  sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
[ -n "$TOKEN" ] || bench_die "login failed"
AUTH="Authorization: Bearer $TOKEN"
curl -fsS -D "$KDIR/headers" -o "$TMP/me.json" -H "$AUTH" "$BASE$PATH_URL" ||
  bench_die "GET $PATH_URL with the token failed"
echo "   keeld response: $(wc -c <"$KDIR/headers") header bytes + $(wc -c <"$TMP/me.json") body bytes"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE$PATH_URL")" = 401 ] ||
  bench_die "GET $PATH_URL without a token was not refused"
mkdir -p "$TMP/keeld"
measure keeld "$KPID" "$BASE$PATH_URL" "$AUTH"
stop_server "$KPID"

# --- nginx: the same body as a static file --------------------------------------
NDIR=$TMP/nginx
mkdir -p "$NDIR/temp" "$NDIR/root/api/v1/users"
cp "$TMP/me.json" "$NDIR/root/api/v1/users/me"
NPORT=$(bench_free_port) || bench_die "no free TCP port found"
user_line=''
[ "$(id -u)" -ne 0 ] || user_line="user $(id -un) $(id -gn);"
temp_lines="client_body_temp_path $NDIR/temp/client_body;"
for m in proxy fastcgi uwsgi scgi; do
  if ! "$NGINX" -V 2>&1 | grep -q -- "--without-http_${m}_module"; then
    temp_lines="$temp_lines
    ${m}_temp_path $NDIR/temp/$m;"
  fi
done
cat >"$NDIR/nginx.conf" <<EOF
# Generated by bench/users_me.sh: keeld's /users/me body as a static file.
worker_processes 1;
daemon off;
master_process on;
pid $NDIR/nginx.pid;
error_log $NDIR/error.log warn;
$user_line
events { worker_connections 1024; }
http {
    access_log off;
    $temp_lines
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$NPORT;
        server_name localhost;
        root $NDIR/root;
        location = $PATH_URL { default_type application/json; }
    }
}
EOF
(
  cd "$NDIR"
  exec taskset -c "$SERVER_CPU" "$NGINX" -p "$NDIR/" -c "$NDIR/nginx.conf" -e "$NDIR/error.log"
) </dev/null >"$NDIR/stdout.log" 2>"$NDIR/stderr.log" &
NPID=$!
SERVER_PIDS+=("$NPID")
bench_wait_http "http://127.0.0.1:$NPORT$PATH_URL" "$NPID" "$NDIR/first-body" 10 ||
  { cat "$NDIR/error.log" "$NDIR/stderr.log" >&2 2>/dev/null; bench_die "nginx failed to start"; }
measure nginx "$NPID" "http://127.0.0.1:$NPORT$PATH_URL" ""
stop_server "$NPID"

echo
echo "== summary (medians)"
ratio=$(awk -v k="${MED_RPC[keeld]}" -v n="${MED_RPC[nginx]}" 'BEGIN {
    if (k == "nan" || n == "nan" || n + 0 == 0) print "nan"; else printf "%.2f", k / n }')
verdict=$(awk -v v="$ratio" -v lim="$TARGET_RATIO" 'BEGIN {
    if (v == "nan") print "n/a"; else print (v + 0 >= lim + 0) ? "ok" : "MISSED" }')
printf '   %-46s %10s   target >= %-5s %s\n' "keeld/nginx requests per server CPU-s" "$ratio" "$TARGET_RATIO" "$verdict"
for t in keeld nginx; do
  printf '   %-46s %10s\n' "$t requests per server CPU-s" "${MED_RPC[$t]}"
  printf '   %-46s %10s\n' "$t req/s" "${MED_RPS[$t]}"
  printf '   %-46s %10s\n' "$t p99 latency, ms" "${MED_P99[$t]}"
done
exit 0
