#!/usr/bin/env bash
# Every figure of docs/BENCHMARKS.md, 3 runs each, in a row (about 13 minutes
# on the build machine). Output: the JSON lines of each script.
set -u
cd "$(dirname "$0")/.."
for i in 1 2 3; do build/bin/loopfloor --conns 100000 --procs 6; done
for i in 1 2 3; do RATE=20000 SOURCES=50 bench/edge.sh 100000 6 2>&1 | grep figure; done
for i in 1 2 3; do bench/unicast.sh 20000 2>&1 | grep figure; done
for i in 1 2 3; do bench/unicast.sh 100000 2>&1 | grep figure; done
for i in 1 2 3; do bench/pipeline.sh ingest 200000 2>&1 | grep -E "figure|rate"; done
for i in 1 2 3; do INFLIGHT=4096 bench/pipeline.sh ingest 200000 2>&1 | grep -E "rate"; done
for i in 1 2 3; do bench/pipeline.sh e2e 10000 2>&1 | grep figure; done
for i in 1 2 3; do bench/pipeline.sh e2e 30000 2>&1 | grep figure; done
for i in 1 2 3; do bench/shard_moves.py 2>&1 | grep figure; done
