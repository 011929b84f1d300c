#!/usr/bin/env bash
# Run integration tests with every service under valgrind (memcheck): any
# invalid access, or a definite leak at exit, makes the service exit 99,
# which the tests see as a failed stop. Uses the release build (build/);
# valgrind and the sanitizers of the test build do not mix.
#   scripts/valgrind.sh [TEST_MODULE...]   (default: test_walking_skeleton test_publishing)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
scripts/build.sh build -DPUSH_SANITIZE=OFF >/dev/null
logs=$(mktemp -d /tmp/push-valgrind.XXXXXX)
export PUSH_BIN=$PWD/build/bin
export PUSH_TEST_WRAP="valgrind --quiet --error-exitcode=99 --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite --log-file=$logs/%p.log"
cd integration
mods=("$@")
[ ${#mods[@]} -gt 0 ] || mods=(test_walking_skeleton test_publishing)
status=0
/usr/bin/python3 -m unittest "${mods[@]}" || status=$?
for f in "$logs"/*.log; do
  [ -s "$f" ] && { echo "== $f"; cat "$f"; }
done
echo "valgrind logs: $logs (empty files: nothing reported)"
exit $status
