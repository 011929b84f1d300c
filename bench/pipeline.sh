#!/usr/bin/env bash
# The pipeline benchmarks of docs/BENCHMARKS.md.
#   bench/pipeline.sh ingest [COUNT]        durable ingest by one collector (SQLite), 1 recipient each:
#                                           request/reply with 256 in flight, then fire-and-forget
#   bench/pipeline.sh e2e RATE [COUNT]      publish -> collector -> store -> dispatcher -> pusher -> client,
#                                           10,000 connected users, unicast at RATE msgs/s
# Prints one JSON line per figure.
source "$(dirname "$0")/common.sh"
what=${1:-ingest}
now_ms() { date +%s%3N; }

accepted() { curl -fs "$METRICS_collector/metrics" | awk '/^push_collect_accepted_total / {print $2}'; }

bench_servers
bench_start collector collector --store "sqlite:$DIR/push.db"

if [ "$what" = ingest ]; then
  COUNT=${2:-20000}
  "$BIN/pubload" --mode request --count "$COUNT" --rate 0 --inflight 256 --ttl 3600
  before=$(accepted); start=$(now_ms)
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
P=$(free_port)
bench_start pusher pusher --listen "127.0.0.1:$P" --node-id bench-e2e
"$BIN/wsload" --url "ws://127.0.0.1:$P/ws" --conns $USERS --rate 5000 --sources 10 --hold 120 \
  --expect "$COUNT" >"$DIR/wsload.json" &
WS=$!
for _ in $(seq 1 200); do
  c=$(curl -fs "$METRICS_pusher/metrics" | awk '/^push_pusher_connections / {print $2}')
  [ "${c:-0}" -ge $USERS ] && break
  sleep 0.1
done
sleep 1
"$BIN/pubload" --mode collect --count "$COUNT" --rate "$RATE" --users $USERS --ttl 0
wait $WS || true
python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(json.dumps({"figure": "e2e_unicast", "rate_asked": int(sys.argv[2]), "sent": int(sys.argv[3]),
                  "received": r["messages"], "seconds": r["message_span_s"],
                  "received_per_s": round(r["messages"] / r["message_span_s"]) if r["message_span_s"] else None,
                  "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "max_ms": r["max_ms"]}))' "$DIR/wsload.json" "$RATE" "$COUNT"
