#!/usr/bin/env bash
# s3-server.sh - a throwaway S3-compatible server (the npm package s3rver) for the S3 client tests.
#
#   eval "$(scripts/s3-server.sh start)"   start it; prints export lines:
#                                           KEEL_TEST_S3_ENDPOINT, KEEL_TEST_S3_BUCKET,
#                                           KEEL_TEST_S3_REGION, KEEL_TEST_S3_ACCESS_KEY,
#                                           KEEL_TEST_S3_SECRET_KEY
#   scripts/s3-server.sh stop              stop it, remove its data
#   scripts/s3-server.sh env               print the export lines again
#
# s3rver is installed once with npm into $KEEL_S3RVER_PREFIX (default
# /tmp/keel-s3rver.$UID, reused by later runs) from the npm registry; node and
# npm come from scripts/deps.sh node.  The server listens on 127.0.0.1 on a
# random free port and keeps its data in $KEEL_S3_DIR (default
# ${KEEL_SERVICES_DIR:-/tmp/keel-services.$UID}.s3, next to - never inside -
# the PostgreSQL/Redis directory, so test-services.sh stop cannot remove it
# under a running server).  The bucket $KEEL_TEST_S3_BUCKET exists at start.
#
# s3rver knows one account, access key S3RVER / secret S3RVER.  It rejects an
# unknown access key (403 InvalidAccessKeyId) but does not verify SigV4
# signatures, so a wrong secret key is accepted.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
prefix=${KEEL_S3RVER_PREFIX:-/tmp/keel-s3rver.$(id -u)}
dir=${KEEL_S3_DIR:-${KEEL_SERVICES_DIR:-/tmp/keel-services.$(id -u)}.s3}
version=3.7.1
bucket=keel-test

log() { echo "s3-server: $*" >&2; }

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
  [ -f "$dir/s3.env" ] && cat "$dir/s3.env"
}

install_s3rver() {
  [ -x "$prefix/node_modules/.bin/s3rver" ] && return 0
  "$root/scripts/deps.sh" node >&2
  mkdir -p "$prefix"
  log "installing s3rver@$version into $prefix"
  (cd "$prefix" && npm install --no-audit --no-fund --no-save --loglevel=error \
     --cache "$prefix/.npm" "s3rver@$version" >&2) \
    || { log "npm install s3rver@$version failed"; return 1; }
}

start_server() {
  local port=$1
  # s3rver encrypts ListObjectsV2 continuation tokens with DES, which OpenSSL 3 keeps in its
  # legacy provider: without it every truncated listing fails with 500.
  local legacy=()
  if node --openssl-legacy-provider -e '' >/dev/null 2>&1; then legacy=(--openssl-legacy-provider); fi
  nohup node "${legacy[@]}" "$prefix/node_modules/.bin/s3rver" -d "$dir/data" -a 127.0.0.1 -p "$port" -s \
    --no-vhost-buckets --configure-bucket "$bucket" >"$dir/s3rver.log" 2>&1 </dev/null &
  echo $! >"$dir/s3rver.pid"
  for _ in $(seq 1 200); do
    if ! kill -0 "$(cat "$dir/s3rver.pid")" 2>/dev/null; then return 1; fi
    if curl -s -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  return 1
}

cmd_start() {
  install_s3rver
  cmd_stop >/dev/null 2>&1 || true
  mkdir -p "$dir/data"
  local port
  for attempt in 1 2 3 4 5; do
    port=$(pick_port)
    if start_server "$port"; then break; fi
    log "s3rver could not start on $port (attempt $attempt)"
    kill "$(cat "$dir/s3rver.pid")" 2>/dev/null || true
    [ "$attempt" -eq 5 ] && { tail -20 "$dir/s3rver.log" >&2; exit 1; }
  done
  cat >"$dir/s3.env" <<ENV
export KEEL_TEST_S3_ENDPOINT='http://127.0.0.1:$port'
export KEEL_TEST_S3_BUCKET='$bucket'
export KEEL_TEST_S3_REGION='us-east-1'
export KEEL_TEST_S3_ACCESS_KEY='S3RVER'
export KEEL_TEST_S3_SECRET_KEY='S3RVER'
ENV
  log "s3rver on 127.0.0.1:$port ($dir)"
  print_env
}

cmd_stop() {
  if [ -f "$dir/s3rver.pid" ]; then
    local pid
    pid=$(cat "$dir/s3rver.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  env) print_env ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
