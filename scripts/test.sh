#!/usr/bin/env bash
# Set up, build and run every test: unit tests, libFuzzer targets (briefly)
# and integration tests against real nats-server and redis-server, and the
# formatting check; warnings fail the build (PUSH_WERROR).
# The test build uses clang with AddressSanitizer, UndefinedBehaviorSanitizer
# and libFuzzer instrumentation. Prints ctest's summary; exit 0 only if all pass.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
CC=clang scripts/build.sh build-test -DPUSH_SANITIZE=ON -DPUSH_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug \
  -DPUSH_WERROR=ON
cd build-test
ctest --output-on-failure --timeout 900 "$@"
