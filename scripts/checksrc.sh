#!/usr/bin/env bash
# checksrc.sh - bans in library code (style.md R5, R16), in the spirit of curl's checksrc:
# no direct malloc/free (everything goes through the allocator hook), no unbounded or
# unsafe string functions, no rand().  Exits 1 listing every offending line.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
pattern='(^|[^_a-zA-Z0-9.>])(malloc|calloc|realloc|free|strdup|strndup|sprintf|vsprintf|strcpy|strcat|atoi|atol|strtok|rand|srand|gets)[[:space:]]*\('
# alloc.c is the allocator hook itself: the one place allowed to call malloc/free.
hits=$(grep -nE "$pattern" src/*/*.c src/*/*.h | grep -v '^src/core/alloc.c:' \
       | grep -vE '^\S+:[0-9]+:\s*(/\*|\*)' || true)
if [ -n "$hits" ]; then
  echo "checksrc: banned calls in src/ (use keel_malloc/keel_free, snprintf, strtol...):" >&2
  echo "$hits" >&2
  exit 1
fi
echo "checksrc: ok"
