#!/usr/bin/env bash
# Install the build into a temporary prefix, then build examples/hello.c against it twice:
# with pkg-config (keel.pc) and with CMake's find_package(keel).
set -euo pipefail
root=$1
build=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig:$tmp/prefix/lib/x86_64-linux-gnu/pkgconfig"
# static libkeel, shared system libraries
libdir=$(pkg-config --variable=libdir keel)
cc -std=c11 -Wall -Werror "$root/examples/hello.c" -o "$tmp/hello-static" \
   $(pkg-config --cflags keel) "$libdir/libkeel.a" \
   $(pkg-config --libs libmicrohttpd jansson libcrypto sqlite3 libpq hiredis libargon2) -lpthread -lm
# (ldd output captured first: grep -q closing the pipe early would fail the pipeline)
linked=$(ldd "$tmp/hello-static")
! grep -q libkeel.so <<<"$linked"
cc -std=c11 -Wall -Werror "$root/examples/hello.c" -o "$tmp/hello-shared" \
   $(pkg-config --cflags --libs keel) -Wl,-rpath,"$(pkg-config --variable=libdir keel)"
linked=$(ldd "$tmp/hello-shared")
grep -q libkeel.so <<<"$linked"
mkdir -p "$tmp/cm"
cat >"$tmp/cm/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.20)
project(hello C)
find_package(keel REQUIRED)
add_executable(hello $root/examples/hello.c)
target_link_libraries(hello PRIVATE keel::keel)
CM
cmake -S "$tmp/cm" -B "$tmp/cm/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/cm/build" >/dev/null
echo "check-install: pkg-config (static, shared) and find_package(keel) builds ok"
