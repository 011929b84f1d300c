#!/usr/bin/env bash
# The JavaScript client under load, with a pusher restart in the middle:
#   bench/jsclients.sh [CLIENTS] [RATE] [COUNT] [term|kill]
# CLIENTS PushClients in one Node process (bench/js_clients.mjs), one user
# each; pubload sends COUNT messages (ttl 3600, request/reply so each one is
# stored) at RATE msgs/s through the collector, cycling over the users;
# halfway through, the pusher is stopped (SIGTERM: clients get 1001; kill:
# SIGKILL, 1006) and started again on the same port. Prints one JSON line:
# every message handed to the application once and in order per user or
# not, and the clients' reconnect times (from their disconnect, and from the
# new pusher's /readyz).
source "$(dirname "$0")/common.sh"
CLIENTS=${1:-1000}
RATE=${2:-10000}
COUNT=${3:-$(( RATE * 20 ))}
HOW=${4:-term}
now_ms() { date +%s%3N; }

bench_servers
bench_start authd authd
bench_start collector collector --store "sqlite:$DIR/push.db"
bench_start dispatcher dispatcher
WS_PORT=$(free_port)
bench_start pusher pusher --listen "127.0.0.1:$WS_PORT" --node-id bench-js

node --experimental-websocket "$ROOT/bench/js_clients.mjs" --url "ws://127.0.0.1:$WS_PORT/ws" \
  --users "$CLIENTS" --count "$COUNT" --secret "$PUSH_JWT_SECRET" --timeout $(( COUNT / RATE + 240 )) \
  >"$DIR/js.out" 2>"$DIR/js.err" &
JS=$!
PIDS+=($JS)
for _ in $(seq 1 600); do grep -q '"ready"' "$DIR/js.out" && break; sleep 0.1; done
grep -q '"ready"' "$DIR/js.out" || { echo "bench: the clients did not all connect" >&2; cat "$DIR/js.err" >&2; exit 1; }
echo "bench: $CLIENTS clients connected; publishing $COUNT at $RATE/s" >&2

"$BIN/pubload" --mode request --count "$COUNT" --rate "$RATE" --users "$CLIENTS" --ttl 3600 \
  >"$DIR/pubload.json" &
PUB=$!
sleep $(( COUNT / RATE / 2 ))
echo "bench: restarting the pusher ($HOW)" >&2
if [ "$HOW" = kill ]; then kill -9 "$PID_pusher"; else kill "$PID_pusher"; fi
wait "$PID_pusher" 2>/dev/null || true
bench_start pusher pusher --listen "127.0.0.1:$WS_PORT" --node-id bench-js
READY_MS=$(now_ms)
echo "bench: pusher ready again" >&2
wait "$PUB"
wait "$JS" || true
# What the restarted pusher saw, for reading the figures (stderr).
curl -fs "$METRICS_pusher/metrics" | grep -E '^push_pusher_(welcomed|slow_clients_closed|duplicates_dropped|auth_timeouts|frames_sent)_total ' >&2 || true
python3 - "$DIR/js.out" "$DIR/pubload.json" "$READY_MS" "$CLIENTS" "$RATE" "$COUNT" "$HOW" <<'PY'
import json, sys
rep = [json.loads(l) for l in open(sys.argv[1]) if '"report"' in l][0]
pub = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
ready = int(sys.argv[3])
after = sorted(max(0, t - ready) for t in rep.pop("reconnected_at_ms"))
pct = lambda a, p: a[min(len(a) - 1, int(p / 100 * len(a)))] if a else None
rep.pop("ev")
print(json.dumps({"figure": "js_clients_pusher_restart", "clients": int(sys.argv[4]),
                  "rate_asked": int(sys.argv[5]), "count": int(sys.argv[6]), "restart": sys.argv[7],
                  "publisher": pub, **rep,
                  "reconnected_after_ready_p50_ms": pct(after, 50),
                  "reconnected_after_ready_p99_ms": pct(after, 99)}))
PY
