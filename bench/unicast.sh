#!/usr/bin/env bash
# Unicast from the node subject: NodeDeliveries published straight to one
# pusher's push.node.<id> (no collector, no dispatcher), 10,000 connected
# users, at RATE messages/s; latency publish -> client read.
#   bench/unicast.sh RATE [COUNT]
source "$(dirname "$0")/common.sh"
RATE=${1:-20000}
COUNT=${2:-$(( RATE * 5 ))}
USERS=10000
bench_servers
bench_start authd authd
bench_clients bench-u $USERS "$COUNT" 60
sleep 6   # past the replay window of the last connections (no collector here)
# PERF_OUT=FILE: a system-wide perf profile of the first 4 s of the publishing
[ -n "${PERF_OUT:-}" ] && { perf record -a -g -o "$PERF_OUT" -- sleep 4 >/dev/null 2>&1 & }
"$BIN/pubload" --mode node --node bench-u --count "$COUNT" --rate "$RATE" --users $USERS >/dev/null
bench_latency_report unicast_node "$RATE" "$COUNT"
