#!/usr/bin/env bash
# Every public header compiles on its own (style.md R9), as C11 with warnings as errors.
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
cc=${CC:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
for h in "$root"/include/keel/*.h; do
  name=$(basename "$h")
  printf '#include <keel/%s>\n#include <keel/%s>\nint keel_header_check_%s;\n' "$name" "$name" "${name%.h}" >"$tmp/t.c"
  if ! "$cc" -std=c11 -Wall -Wextra -Wpedantic -Werror $(pkg-config --cflags jansson) \
       -I"$root/include" -c "$tmp/t.c" -o "$tmp/t.o" 2>"$tmp/err"; then
    echo "check-headers: keel/$name does not compile alone:" >&2
    cat "$tmp/err" >&2
    status=1
  fi
done
[ $status -eq 0 ] && echo "check-headers: $(ls "$root"/include/keel/*.h | wc -l) headers ok"
exit $status
