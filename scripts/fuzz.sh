#!/usr/bin/env bash
# Run every libFuzzer target in BUILD_DIR/tests for SECONDS each, starting from
# the checked-in corpus (read-only: new inputs go to a scratch directory).
set -euo pipefail
build=${1:-build-fuzz}
secs=${2:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
status=0
shopt -s nullglob
targets=("$build"/tests/fuzz_*)
if [ ${#targets[@]} -eq 0 ]; then
  srcs=("$root"/tests/fuzz/fuzz_*.c)
  if [ ${#srcs[@]} -eq 0 ]; then echo "fuzz.sh: no fuzz targets yet"; exit 0; fi
  echo "fuzz.sh: no fuzz targets built in $build/tests" >&2
  exit 1
fi
for bin in "${targets[@]}"; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin"); name=${name#fuzz_}
  corpus="$root/tests/fuzz/corpus/$name"
  scratch="$build/fuzz-work/$name"
  mkdir -p "$scratch"
  dict=()
  [ -f "$root/tests/fuzz/dict/$name.dict" ] && dict=(-dict="$root/tests/fuzz/dict/$name.dict")
  echo "fuzz: $name for ${secs}s"
  if ! "$bin" "${dict[@]}" -max_total_time="$secs" -print_final_stats=0 -max_len=8192 \
       -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$scratch/" \
       "$scratch" "$corpus" >"$scratch/log" 2>&1; then
    echo "fuzz: $name FAILED; last lines of $scratch/log:" >&2
    tail -40 "$scratch/log" >&2
    status=1
  fi
done
exit $status
