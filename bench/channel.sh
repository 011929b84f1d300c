#!/usr/bin/env bash
# Channel fan-out next to the broadcast figure (docs/BENCHMARKS.md):
# CONNS connections over PUSHERS pusher processes, every one subscribed to
# the channel room.bench; then one message, three ways, a fresh set of
# clients for each (each wsload stops at its first message):
#   broadcast         a NodeDelivery on push.broadcast (what edge.sh measures)
#   channel_nodes     a channel NodeDelivery to each pusher's push.node.<id>:
#                     the dispatcher's output, without collector and dispatcher
#   channel_pipeline  {"channel":"room.bench"} on push.collect: collector,
#                     store, JetStream, dispatcher (Redis lookup), pushers
# Each prints one JSON line: delivered, max_ms (publish -> last frame read),
# worst p99_ms of the wsloads.
#
#   bench/channel.sh [CONNS] [PUSHERS]     (defaults 20000 and 2)
source "$(dirname "$0")/common.sh"
CONNS=${1:-20000}
PUSHERS=${2:-2}
PER=$(( (CONNS + PUSHERS - 1) / PUSHERS ))
RATE=${RATE:-10000}
CHANNEL=room.bench

bench_servers
bench_start authd authd
bench_start collector collector --store "sqlite:$DIR/push.db"
bench_start dispatcher dispatcher
PORTS=()
NODES=""
for i in $(seq 1 "$PUSHERS"); do
  p=$(free_port); PORTS+=("$p")
  bench_start "pusher$i" pusher --listen "127.0.0.1:$p" --node-id "bench-$i"
  NODES="${NODES:+$NODES,}bench-$i"
done
URLS=()
for i in $(seq 1 "$PUSHERS"); do m="METRICS_pusher$i"; URLS+=("${!m}/metrics"); done
sum_metric() { curl -fs "${URLS[@]}" | awk -v m="$1" '$1 == m {n += $2} END {print n + 0}'; }

round() {
  local figure=$1; shift
  local WS=() i
  rm -f "$DIR"/wsload*.json
  for i in $(seq 1 "$PUSHERS"); do
    "$BIN/wsload" --url "ws://127.0.0.1:${PORTS[$((i-1))]}/ws" --conns "$PER" \
      --rate $(( RATE / PUSHERS )) --sources ${SOURCES:-50} --first-user $(( (i-1) * PER )) --hold 120 \
      --expect "$PER" --linger 2 --channel "$CHANNEL" >"$DIR/wsload$i.json" 2>"$DIR/wsload$i.err" &
    WS+=($!)
  done
  local target=$(( PER * PUSHERS )) start=$SECONDS n
  until [ "$(sum_metric push_pusher_subscriptions)" -ge "$target" ]; do
    if [ $(( SECONDS - start )) -gt 120 ]; then
      echo "bench: $(sum_metric push_pusher_subscriptions) subscriptions of $target, $(sum_metric push_pusher_connections) connections after 120 s" >&2; break; fi
    sleep 0.2
  done
  # every subscription answered (the routes are written) before the publish
  until [ "$(sum_metric push_pusher_subscribed_total)" -ge "$(( target * ROUND ))" ]; do
    if [ $(( SECONDS - start )) -gt 120 ]; then break; fi
    sleep 0.2
  done
  sleep 1
  "$@" >/dev/null
  for pid in "${WS[@]}"; do wait "$pid" || true; done
  cat "$DIR"/wsload*.json >&2   # each load generator's own counts, for the record
  cat "$DIR"/wsload*.json | FIGURE=$figure python3 -c '
import json, os, sys
rs = [json.loads(l) for l in sys.stdin if l.strip()]
print(json.dumps({"figure": os.environ["FIGURE"], "subscribers": sum(r["subscribed"] for r in rs),
                  "delivered": sum(r["messages"] for r in rs),
                  "max_ms": max(r["max_ms"] for r in rs),
                  "worst_p99_ms": max(r["p99_ms"] for r in rs)}))'
  # the closes of this round's clients are over before the next round starts
  until [ "$(sum_metric push_pusher_subscriptions)" -eq 0 ]; do sleep 0.2; done
}

ROUND=1
round broadcast "$BIN/pubload" --mode broadcast --count 1 --rate 0
ROUND=2
round channel_nodes "$BIN/pubload" --mode node --node "$NODES" --channel "$CHANNEL" --count 1 --rate 0
ROUND=3
round channel_pipeline "$BIN/pubload" --mode collect --channel "$CHANNEL" --count 1 --rate 0
