#!/usr/bin/env bash
# Install the Debian packages keel needs, only those that are missing.
#
#   scripts/deps.sh            build + test packages
#   scripts/deps.sh bench      also the benchmark tools (wrk, nginx)
#   scripts/deps.sh node       also Node.js and npm (scripts/s3-server.sh runs s3rver)
#
# Idempotent: when everything is present it does nothing and needs no root.
set -euo pipefail

pkgs=(
  gcc make cmake pkg-config
  clang libclang-rt-14-dev          # libFuzzer targets, sanitizer runtime
  libmicrohttpd-dev libjansson-dev libssl-dev
  libsqlite3-dev                    # the embedded default store
  libpq-dev libhiredis-dev          # PostgreSQL and Redis clients
  libargon2-dev                     # password hashing
  libcurl4-openssl-dev              # integration tests drive keeld over HTTP; client module
  libcmocka-dev
  curl procps
)
for group in "$@"; do
  case "$group" in
    bench) pkgs+=(wrk nginx-light util-linux) ;;
    services) pkgs+=(postgresql redis-server redis-tools util-linux) ;;
    # A Node.js from elsewhere (NodeSource bundles npm) satisfies the group as it is.
    node) command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || pkgs+=(nodejs npm) ;;
    *) echo "deps.sh: unknown group '$group' (known: bench, services, node)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${pkgs[@]}"; do
  st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$st" = installed ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=sudo
  else
    echo "deps.sh: these Debian packages are missing: ${missing[*]}" >&2
    echo "deps.sh: run as root (or with sudo): apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
else
  SUDO=
fi

echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2 || true
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
