#!/usr/bin/env bash
# Fail if any tracked C file differs from what clang-format makes of it
# (the root .clang-format). Run by ctest as the test "format"; fix with
#   git ls-files '*.c' '*.h' | xargs clang-format -i
set -euo pipefail
cd "$(dirname "$0")/.."
CLANG_FORMAT=${CLANG_FORMAT:-clang-format}
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files '*.c' '*.h')
else # a source tarball: every C file but build folders
  mapfile -t files < <(find . -path './build*' -prune -o \( -name '*.c' -o -name '*.h' \) -print)
fi
[ ${#files[@]} -gt 0 ] || { echo "check-format: no C files found" >&2; exit 1; }
"$CLANG_FORMAT" --dry-run --Werror "${files[@]}"
echo "check-format: ${#files[@]} files formatted"
