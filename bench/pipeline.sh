#!/usr/bin/env bash
# The pipeline benchmarks of docs/BENCHMARKS.md.
#   bench/pipeline.sh ingest [COUNT]        durable ingest by one collector (SQLite), 1 recipient each:
#                                           request/reply with 256 in flight, then fire-and-forget
#   bench/pipeline.sh e2e RATE [COUNT]      publish -> collector -> store -> dispatcher -> pusher -> client,
#                                           10,000 connected users, unicast at RATE msgs/s;
#                                           TTL=S stores each message (default 0: live only);
#                                           reports duplicates (a message id a client got twice)
# Prints one JSON line per figure.
source "$(dirname "$0")/common.sh"
what=${1:-ingest}
now_ms() { date +%s%3N; }

accepted() { curl -fs "$METRICS_collector/metrics" | awk '/^push_collect_accepted_total / {print $2}'; }

bench_servers
bench_start collector collector --store "sqlite:$DIR/push.db"

if [ "$what" = ingest ]; then
  COUNT=${2:-20000}
  "$BIN/pubload" --mode request --count "$COUNT" --rate 0 --inflight ${INFLIGHT:-256} --ttl 3600
  before=$(accepted); start=$(now_ms)
  # PERF_OUT=FILE: a system-wide perf profile of the first second of fire-and-forget
  [ -n "${PERF_OUT:-}" ] && { perf record -a -g -o "$PERF_OUT" -- sleep "${PERF_S:-1}" >/dev/null 2>&1 & }
  "$BIN/pubload" --mode collect --count "$COUNT" --rate 0 --ttl 3600 >/dev/null
  while [ "$(accepted)" -lt $(( before + COUNT )) ]; do
    [ $(( $(now_ms) - start )) -gt 300000 ] && { echo "bench: ingest stalled at $(accepted)" >&2; break; }
    sleep 0.05
  done
  ms=$(( $(now_ms) - start ))
  echo "{\"figure\":\"ingest_fire_and_forget\",\"stored\":$(( $(accepted) - before )),\"ms\":$ms,\"per_second\":$(( ($(accepted) - before) * 1000 / ms ))}"
  exit 0
fi

RATE=${2:-10000}
COUNT=${3:-$(( RATE * 10 ))}
USERS=10000
bench_start authd authd
bench_start dispatcher dispatcher
DUPS=1 bench_clients bench-e2e $USERS "$COUNT" $(( COUNT / RATE + 120 ))
sleep 1
# PERF_OUT=FILE: a system-wide perf profile of 4 s of the publishing
[ -n "${PERF_OUT:-}" ] && { (sleep 2; perf record -a -g -o "$PERF_OUT" -- sleep 4 >/dev/null 2>&1) & }
"$BIN/pubload" --mode collect --count "$COUNT" --rate "$RATE" --users $USERS --ttl "${TTL:-0}"
bench_latency_report "e2e_unicast_ttl${TTL:-0}" "$RATE" "$COUNT"
