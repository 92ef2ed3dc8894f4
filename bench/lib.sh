# shellcheck shell=bash
# bench/lib.sh - shell helpers shared by the benchmark scripts in bench/.
#
# Source it from bash (`. "$BENCH_DIR/lib.sh"`); it defines functions only and
# changes no state.  Everything here reads /proc directly so the scripts need
# nothing beyond coreutils, awk, curl and procps.

# bench_die MESSAGE...: print to stderr and exit 1 (the EXIT trap cleans up).
bench_die() {
  echo "bench: error: $*" >&2
  exit 1
}

# bench_warn MESSAGE...: print a warning to stderr.
bench_warn() {
  echo "bench: warning: $*" >&2
}

# bench_is_uint VALUE: true when VALUE is a non-empty string of digits.
bench_is_uint() {
  case "$1" in
    '' | *[!0-9]*) return 1 ;;
    *) return 0 ;;
  esac
}

# bench_allowed_cpus: the CPUs this process may run on, one number per line,
# expanded from Cpus_allowed_list ("0-3,6" -> 0 1 2 3 6).
bench_allowed_cpus() {
  awk -F'\t' '/^Cpus_allowed_list:/ {
      n = split($2, parts, ",")
      for (i = 1; i <= n; i++) {
        if (split(parts[i], r, "-") == 2) { for (c = r[1]; c <= r[2]; c++) print c }
        else print parts[i]
      }
    }' /proc/self/status
}

# bench_port_in_use PORT: true when something listens on TCP PORT (v4 or v6).
bench_port_in_use() {
  local hex
  hex=$(printf '%04X' "$1")
  # Field 2 is local address "ADDR:PORT" in hex, field 4 the state; 0A = LISTEN.
  awk -v p="$hex" 'FNR > 1 { split($2, a, ":"); if (a[length(a)] == p && $4 == "0A") found = 1 }
                   END { exit !found }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# bench_free_port: print a TCP port in 20000-59999 that nothing listens on.
# There is a window between choosing and binding; callers retry on failure.
bench_free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    if ! bench_port_in_use "$p"; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

# bench_cpu_ticks PID...: print the summed utime+stime of the given processes,
# in clock ticks (divide by `getconf CLK_TCK`).  For a multi-threaded process
# the per-process line already covers every thread.  Fails if a PID is gone.
bench_cpu_ticks() {
  local pid line total=0 f
  for pid in "$@"; do
    line=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    # The command name (field 2) may contain spaces and ')'; cut after the
    # last ')'.  What remains starts at field 3 (state): utime is field 14,
    # so index 11 of the rest, stime index 12.
    read -r -a f <<<"${line##*) }"
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}

# bench_core_busy_ticks CPU: print the ticks CPU has spent running tasks
# (user + nice + system) plus the ticks the hypervisor stole from it, from
# /proc/stat.  Interrupt and softirq time are left out: loopback traffic of
# the benchmark itself lands there.
bench_core_busy_ticks() {
  awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $9; found = 1 } END { exit !found }' /proc/stat
}

# bench_rss_kib PID...: print the summed VmRSS of the given processes, in KiB.
bench_rss_kib() {
  local pid kib total=0
  for pid in "$@"; do
    kib=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) || return 1
    [ -n "$kib" ] || return 1
    total=$((total + kib))
  done
  echo "$total"
}

# bench_children PID: print the PIDs of PID's direct children, one a line.
bench_children() {
  pgrep -P "$1" || true
}

# bench_median NUMBER...: print the median (mean of the two middle values
# for an even count).
bench_median() {
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
    END {
      if (NR == 0) exit 1
      if (NR % 2) print v[(NR + 1) / 2]
      else printf "%.6g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2
    }'
}

# bench_to_ms VALUE: convert a wrk duration ("850.00us", "1.23ms", "2.01s",
# "1.00m") to milliseconds.
bench_to_ms() {
  awk -v v="$1" 'BEGIN {
      n = v + 0
      if (v ~ /us$/) ms = n / 1000
      else if (v ~ /ms$/) ms = n
      else if (v ~ /m$/) ms = n * 60000
      else if (v ~ /s$/) ms = n * 1000
      else { exit 1 }
      printf "%.3f\n", ms
    }'
}

# bench_wrk_field FILE FIELD: extract one number from a saved `wrk --latency`
# report.  FIELD is one of:
#   requests  completed requests ("N requests in 10.00s")
#   rps       the "Requests/sec:" value
#   p99       the 99% latency line, as written by wrk (unit suffix kept)
#   non2xx    "Non-2xx or 3xx responses:" count (0 when the line is absent)
#   sockerr   sum of the "Socket errors:" counts (0 when the line is absent)
bench_wrk_field() {
  awk -v f="$2" '
    f == "requests" && / requests in / { print $1; found = 1 }
    f == "rps"      && /^Requests\/sec:/ { print $2; found = 1 }
    f == "p99"      && $1 == "99%" { print $2; found = 1 }
    f == "non2xx"   && /^ *Non-2xx or 3xx responses:/ { print $NF; found = 1 }
    f == "sockerr"  && /^ *Socket errors:/ {
        gsub(/[^0-9 ]/, " "); s = 0; for (i = 1; i <= NF; i++) s += $i; print s; found = 1 }
    END {
      if (!found && (f == "non2xx" || f == "sockerr")) print 0
      else if (!found) exit 1
    }' "$1"
}

# bench_wait_http URL PID OUTFILE [SECONDS]: poll URL until it answers 2xx,
# writing the body to OUTFILE.  Fails early if process PID exits, or after
# SECONDS (default 10).
bench_wait_http() {
  local url=$1 pid=$2 out=$3 limit=${4:-10}
  for _ in $(seq 1 $((limit * 10))); do
    kill -0 "$pid" 2>/dev/null || return 1
    if curl -fsS --max-time 1 -o "$out" "$url" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}
