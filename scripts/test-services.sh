#!/usr/bin/env bash
# test-services.sh - throwaway PostgreSQL and Redis servers for the test suite.
#
#   eval "$(scripts/test-services.sh start)"   start both; prints export lines:
#                                               KEEL_TEST_PG_DSN, KEEL_TEST_REDIS_URL
#   scripts/test-services.sh stop              stop both, remove their data
#   scripts/test-services.sh restart-pg        restart PostgreSQL on the same port
#   scripts/test-services.sh restart-redis     restart Redis on the same port
#   scripts/test-services.sh stop-pg|start-pg  take PostgreSQL down / bring it back (same port)
#   scripts/test-services.sh env               print the export lines again
#
# Servers listen on 127.0.0.1 on random free ports, keep their data in
# $KEEL_SERVICES_DIR (default /tmp/keel-services.$UID), run without fsync, and
# are owned by the current user (PostgreSQL refuses root, so under root it runs
# as the 'postgres' system user its Debian package creates).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${KEEL_SERVICES_DIR:-/tmp/keel-services.$(id -u)}
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)

log() { echo "test-services: $*" >&2; }

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pick_port() {
  local p
  for _ in $(seq 1 50); do
    p=$(( (RANDOM << 1 | RANDOM & 1) % 30000 + 20000 ))
    if port_free "$p"; then echo "$p"; return 0; fi
  done
  log "no free port found"; return 1
}

print_env() {
  # shellcheck disable=SC1091
  [ -f "$dir/services.env" ] && cat "$dir/services.env"
}

# fsync=off is safe here (the OS does not crash under a test), but synchronous_commit must
# stay on: restart-pg/stop-pg stop the server the hard way, and commits still waiting in
# PostgreSQL's own WAL buffers would be lost.
start_pg() {
  local port=$1
  as_pg "$pgbin/pg_ctl" -D "$dir/pg" -l "$dir/pg.log" -w -t 30 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=200" \
    start >/dev/null
}

start_redis() {
  local port=$1
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir" >/dev/null
  for _ in $(seq 1 100); do
    redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  log "redis did not start; see $dir/redis.log"; return 1
}

cmd_start() {
  "$root/scripts/deps.sh" services >&2
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  cmd_stop >/dev/null 2>&1 || true
  mkdir -p "$dir"
  chmod 0755 "$dir"
  if [ "$(id -u)" -eq 0 ]; then chown postgres "$dir"; fi
  as_pg "$pgbin/initdb" -D "$dir/pg" -A trust -U keel --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 \
    || { log "initdb failed:"; cat "$dir/initdb.log" >&2; exit 1; }
  local pgport redisport
  for attempt in 1 2 3 4 5; do
    pgport=$(pick_port)
    if start_pg "$pgport"; then break; fi
    log "PostgreSQL could not start on $pgport (attempt $attempt)"
    [ "$attempt" -eq 5 ] && { tail -20 "$dir/pg.log" >&2; exit 1; }
  done
  as_pg "$pgbin/createdb" -h 127.0.0.1 -p "$pgport" -U keel keel_test
  for attempt in 1 2 3 4 5; do
    redisport=$(pick_port)
    if start_redis "$redisport"; then break; fi
    [ "$attempt" -eq 5 ] && exit 1
  done
  cat >"$dir/services.env" <<ENV
export KEEL_TEST_PG_DSN='postgres://keel@127.0.0.1:$pgport/keel_test'
export KEEL_TEST_PG_PORT='$pgport'
export KEEL_TEST_REDIS_URL='redis://127.0.0.1:$redisport/0'
export KEEL_TEST_REDIS_PORT='$redisport'
export KEEL_SERVICES_DIR='$dir'
ENV
  log "PostgreSQL on 127.0.0.1:$pgport, Redis on 127.0.0.1:$redisport ($dir)"
  print_env
}

cmd_stop() {
  if [ -f "$dir/pg/postmaster.pid" ] && [ -n "$pgbin" ]; then
    as_pg "$pgbin/pg_ctl" -D "$dir/pg" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  if [ -f "$dir/redis.pid" ]; then
    local pid
    pid=$(cat "$dir/redis.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  fi
  rm -rf "$dir"
}

cmd_restart_pg() {
  # shellcheck disable=SC1090
  source "$dir/services.env"
  as_pg "$pgbin/pg_ctl" -D "$dir/pg" -m immediate -w stop >/dev/null
  start_pg "$KEEL_TEST_PG_PORT"
}

cmd_stop_pg() {
  # shellcheck disable=SC1090
  source "$dir/services.env"
  as_pg "$pgbin/pg_ctl" -D "$dir/pg" -m immediate -w stop >/dev/null
}

cmd_start_pg() {
  # shellcheck disable=SC1090
  source "$dir/services.env"
  start_pg "$KEEL_TEST_PG_PORT"
}

cmd_restart_redis() {
  # shellcheck disable=SC1090
  source "$dir/services.env"
  local pid
  pid=$(cat "$dir/redis.pid")
  kill "$pid"
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  start_redis "$KEEL_TEST_REDIS_PORT"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  restart-pg) cmd_restart_pg ;;
  restart-redis) cmd_restart_redis ;;
  stop-pg) cmd_stop_pg ;;
  start-pg) cmd_start_pg ;;
  env) print_env ;;
  *) echo "usage: $0 start|stop|restart-pg|restart-redis|stop-pg|start-pg|env" >&2; exit 2 ;;
esac
