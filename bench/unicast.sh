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
P=$(free_port)
bench_start pusher pusher --listen "127.0.0.1:$P" --node-id bench-u
"$BIN/wsload" --url "ws://127.0.0.1:$P/ws" --conns $USERS --rate 5000 --sources 10 --hold 60 \
  --expect "$COUNT" >"$DIR/wsload.json" &
WS=$!
for _ in $(seq 1 200); do
  c=$(curl -fs "$METRICS_pusher/metrics" | awk '/^push_pusher_connections / {print $2}')
  [ "${c:-0}" -ge $USERS ] && break
  sleep 0.1
done
sleep 6   # past the replay window of the last connections (no collector here)
[ -n "${PERF_OUT:-}" ] && { perf record -g -o "$PERF_OUT" -p "$PID_pusher" -- sleep 4 >/dev/null 2>&1 & }
"$BIN/pubload" --mode node --node bench-u --count "$COUNT" --rate "$RATE" --users $USERS >/dev/null
wait $WS || true
python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(json.dumps({"figure": "unicast_node", "rate_asked": int(sys.argv[2]), "sent": int(sys.argv[3]),
                  "received": r["messages"], "seconds": r["message_span_s"],
                  "received_per_s": round(r["messages"] / r["message_span_s"]) if r["message_span_s"] else None,
                  "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "max_ms": r["max_ms"]}))' "$DIR/wsload.json" "$RATE" "$COUNT"
