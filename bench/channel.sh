#!/usr/bin/env bash
# The channel benchmarks of docs/BENCHMARKS.md ("Channels"). Three modes:
#
#   bench/channel.sh [fanout] [CONNS] [PUSHERS]            (defaults 20000 and 2)
#     CONNS connections over PUSHERS pusher processes, every one subscribed to
#     the channel room.bench; then one message, three ways, a fresh set of
#     clients for each (each wsload stops at its first message):
#       broadcast         a NodeDelivery on push.broadcast (what edge.sh measures)
#       channel_nodes     a channel NodeDelivery to each pusher's push.node.<id>:
#                         the dispatcher's output, without collector and dispatcher
#       channel_pipeline  {"channel":"room.bench"} on push.collect: collector,
#                         store, JetStream, dispatcher (Redis lookup), pushers
#     Each prints one JSON line: delivered, max_ms (publish -> last frame read),
#     worst p99_ms of the wsloads. First, bench/loopfloor's floor for CONNS
#     frames over PUSHERS processes (FLOOR=0: skip it); last, one line with
#     the three figures next to the floor.
#
#   bench/channel.sh many [CONNS] [PUSHERS] [RATE] [SECONDS]
#     (defaults 100000 6 20000 10) CONNS connections, each subscribed to
#     PER_CONN (10) of CHANNELS (10,000) channels ch.N (connection g takes
#     (g * 7 + k * CHANNELS / PER_CONN) % CHANNELS, so each channel has about
#     CONNS * PER_CONN / CHANNELS subscribers); then RATE channel messages/s
#     for SECONDS through push.collect, cycling over ch.0 .. ch.CHANNELS-1.
#     Prints received against expected (the sum over messages of their
#     channel's subscribers) and p50/p99/max publish -> frame (latencies over
#     1 s count as the maximum in p50/p99). Beyond what the machine delivers,
#     it waits for the backlog while the pushers' frames still grow.
#
#   bench/channel.sh churn [CONNS] [PUSHERS] [CHURN_RATE] [FANOUTS]
#     (defaults 100000 6 10000 10) CONNS connections on room.bench; FANOUTS
#     channel messages through push.collect, one every INTERVAL (2) s, with no
#     churn; then CHURN_CONNS (1000) more connections per pusher doing
#     CHURN_RATE subscribes + unsubscribes per second in all, over
#     CHURN_CHANNELS (1000) channels churn.N (CHURN_CHANNELS=0: on room.bench
#     itself), and FANOUTS more messages. Prints both phases' per-message
#     publish -> last frame (median and worst) and the churn achieved. A
#     warm-up message goes first and counts in neither phase.
#
# Every mode waits until each load generator has every connection welcomed
# and every subscription answered (and the pushers' push_pusher_subscriptions
# add up) before it publishes, up to WAIT_S (300) s; wsload reopens
# connections the pushers refuse or close (--retry). If they do not all get
# there it says so on stderr and the figure carries "all_subscribed": false.
source "$(dirname "$0")/common.sh"
MODE=fanout
case "${1:-}" in fanout | many | churn) MODE=$1; shift ;; esac
case $MODE in
  fanout) CONNS=${1:-20000}; PUSHERS=${2:-2} ;;
  many) CONNS=${1:-100000}; PUSHERS=${2:-6}; MSG_RATE=${3:-20000}; MSG_SECONDS=${4:-10} ;;
  churn) CONNS=${1:-100000}; PUSHERS=${2:-6}; CHURN_RATE=${3:-10000}; FANOUTS=${4:-10} ;;
esac
PER=$(( (CONNS + PUSHERS - 1) / PUSHERS ))
TOTAL=$(( PER * PUSHERS ))
RATE=${RATE:-10000}          # connect rate asked of the load generators, in all
WAIT_S=${WAIT_S:-300}
CHANNEL=room.bench

if [ "$MODE" = fanout ] && [ "${FLOOR:-1}" != 0 ]; then
  # the kernel's floor for the same number of frames, before anything else runs
  FLOOR_LINE=$("$BIN/loopfloor" --conns "$CONNS" --procs "$PUSHERS" || true)
  echo "$FLOOR_LINE"
fi

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

# start_wsloads TAG CONNS_EACH FIRST_USER_BASE ARGS...: one wsload per pusher,
# output in $DIR/TAG<i>.json, readiness in $DIR/TAG<i>.ready; pids in WS.
start_wsloads() {
  local tag=$1 each=$2 base=$3 i; shift 3
  WS=()
  rm -f "$DIR/$tag"*.json "$DIR/$tag"*.ready
  for i in $(seq 1 "$PUSHERS"); do
    "$BIN/wsload" --url "ws://127.0.0.1:${PORTS[$((i-1))]}/ws" --conns "$each" \
      --rate $(( RATE / PUSHERS )) --sources ${SOURCES:-50} --first-user $(( base + (i-1) * each )) \
      --retry --ready-file "$DIR/$tag$i.ready" "$@" \
      >"$DIR/$tag$i.json" 2>"$DIR/$tag$i.err" &
    WS+=($!)
  done
}

# wait_ready TAG SUBSCRIPTIONS: until every wsload of TAG is ready and the
# pushers hold SUBSCRIPTIONS subscriptions (0: don't look). Sets ALL_READY.
wait_ready() {
  local tag=$1 want=$2 start=$SECONDS last=$SECONDS ready subs conns
  ALL_READY=true
  while :; do
    ready=$(find "$DIR" -maxdepth 1 -name "$tag*.ready" | wc -l)
    subs=$(sum_metric push_pusher_subscriptions)
    [ "$ready" -ge "$PUSHERS" ] && [ "$subs" -ge "$want" ] && break
    if [ $(( SECONDS - start )) -ge "$WAIT_S" ]; then
      conns=$(sum_metric push_pusher_connections)
      echo "bench: NOT ALL SUBSCRIBED after $WAIT_S s: $ready of $PUSHERS load generators ready," \
        "$subs subscriptions of $want, $conns connections on the pushers; publishing anyway," \
        "the figures below count only the clients that got there" >&2
      ALL_READY=false
      return
    fi
    if [ $(( SECONDS - last )) -ge 10 ]; then
      last=$SECONDS
      echo "bench: waiting: $ready of $PUSHERS load generators ready, $subs subscriptions of $want," \
        "$(sum_metric push_pusher_connections) connections" >&2
    fi
    sleep 0.5
  done
  echo "bench: every client subscribed after $(( SECONDS - start )) s ($subs subscriptions)" >&2
}

# wait_wsloads SECONDS: wait for the wsloads in WS, stop those still running after SECONDS.
wait_wsloads() {
  local deadline=$(( SECONDS + $1 )) pid
  for pid in "${WS[@]}"; do
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" || true
  done
}

# until the pushers hold no subscription (the last round's closes are over)
wait_closed() {
  local start=$SECONDS
  until [ "$(sum_metric push_pusher_subscriptions)" -eq 0 ]; do
    if [ $(( SECONDS - start )) -gt 120 ]; then
      echo "bench: $(sum_metric push_pusher_subscriptions) subscriptions left 120 s after the round" >&2; break; fi
    sleep 0.2
  done
}

round() {
  local figure=$1; shift
  start_wsloads wsload "$PER" 0 --hold 900 --expect "$PER" --linger 2 --channel "$CHANNEL"
  wait_ready wsload "$TOTAL"
  sleep 1
  "$@" >/dev/null
  wait_wsloads 120
  cat "$DIR"/wsload*.json >&2   # each load generator's own counts, for the record
  cat "$DIR"/wsload*.json | FIGURE=$figure ALL=$ALL_READY TOTAL=$TOTAL python3 -c '
import json, os, sys
rs = [json.loads(l) for l in sys.stdin if l.strip()]
print(json.dumps({"figure": os.environ["FIGURE"], "clients": int(os.environ["TOTAL"]),
                  "all_subscribed": os.environ["ALL"] == "true",
                  "subscribers": sum(r["subscribed"] for r in rs),
                  "delivered": sum(r["messages"] for r in rs),
                  "max_ms": max(r["max_ms"] for r in rs),
                  "worst_p99_ms": max(r["p99_ms"] for r in rs)}))' | tee -a "$DIR/figures"
  wait_closed
}

if [ "$MODE" = fanout ]; then
  round broadcast "$BIN/pubload" --mode broadcast --count 1 --rate 0
  round channel_nodes "$BIN/pubload" --mode node --node "$NODES" --channel "$CHANNEL" --count 1 --rate 0
  round channel_pipeline "$BIN/pubload" --mode collect --channel "$CHANNEL" --count 1 --rate 0
  FLOOR_LINE=${FLOOR_LINE:-} python3 -c '
import json, os, sys
f = {}
for l in open(sys.argv[1]):
    r = json.loads(l); f[r["figure"]] = r["max_ms"]
floor = json.loads(os.environ["FLOOR_LINE"])["ms"] if os.environ["FLOOR_LINE"].strip() else None
b = f.get("broadcast")
out = {"figure": "channel_vs_broadcast", "floor_ms": floor, "broadcast_ms": b,
       "channel_nodes_ms": f.get("channel_nodes"), "channel_pipeline_ms": f.get("channel_pipeline")}
for k in ("channel_nodes", "channel_pipeline"):
    if b and f.get(k) is not None:
        out[k + "_over_broadcast"] = round(f[k] / b, 3)
print(json.dumps(out))' "$DIR/figures"
  exit 0
fi

if [ "$MODE" = many ]; then
  CHANNELS=${CHANNELS:-10000}
  PER_CONN=${PER_CONN:-10}
  STRIDE=${STRIDE:-7}
  MSGS=$(( MSG_RATE * MSG_SECONDS ))
  # what each load generator should get: for each of its connections' channels,
  # the messages sent to that channel (message n goes to ch.<n % CHANNELS>)
  EXPECT=$(python3 -c '
import sys
total, per, pushers, chans, per_conn, stride, msgs = map(int, sys.argv[1:])
step = chans // per_conn
on = [msgs // chans + (1 if c < msgs % chans else 0) for c in range(chans)]
print(" ".join(str(sum(on[(g * stride + k * step) % chans]
                       for g in range(i * per, (i + 1) * per) for k in range(per_conn)))
               for i in range(pushers)))' "$TOTAL" "$PER" "$PUSHERS" "$CHANNELS" "$PER_CONN" "$STRIDE" "$MSGS")
  read -r -a EXP <<<"$EXPECT"
  WS=()
  for i in $(seq 1 "$PUSHERS"); do
    "$BIN/wsload" --url "ws://127.0.0.1:${PORTS[$((i-1))]}/ws" --conns "$PER" \
      --rate $(( RATE / PUSHERS )) --sources ${SOURCES:-50} --first-user $(( (i-1) * PER )) \
      --retry --ready-file "$DIR/many$i.ready" --chan-count "$CHANNELS" --chan-per "$PER_CONN" \
      --chan-stride "$STRIDE" --chan-prefix ch. --expect "${EXP[$((i-1))]}" \
      --hold $(( 900 + MSG_SECONDS )) --hist "$DIR/many$i.hist" --linger 2 \
      >"$DIR/many$i.json" 2>"$DIR/many$i.err" &
    WS+=($!)
  done
  wait_ready many $(( TOTAL * PER_CONN ))
  sleep 1
  f0=$(sum_metric push_pusher_channel_frames_total)
  "$BIN/pubload" --mode collect --channel ch. --channels "$CHANNELS" --rate "$MSG_RATE" \
    --count "$MSGS" >"$DIR/pubload.json"
  cat "$DIR/pubload.json" >&2
  # past what the machine can deliver a backlog drains after the publisher
  # is done: wait while the pushers' channel frames still grow, and stop the
  # load generators (they print what they got) once they stalled STALL_S s
  last=$(sum_metric push_pusher_channel_frames_total); still=$SECONDS
  while :; do
    alive=0; for pid in "${WS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    now=$(sum_metric push_pusher_channel_frames_total)
    [ "$now" != "$last" ] && { last=$now; still=$SECONDS; }
    if [ $(( SECONDS - still )) -ge "${STALL_S:-10}" ]; then
      echo "bench: no channel frame for ${STALL_S:-10} s and not every client got what it expected; stopping the load generators" >&2
      break
    fi
    sleep 1
  done
  wait_wsloads 0
  f1=$(sum_metric push_pusher_channel_frames_total)
  cat "$DIR"/many*.json >&2
  ALL=$ALL_READY FRAMES=$(( f1 - f0 )) EXPECTED=$(( $(echo "$EXPECT" | tr ' ' '+') )) \
  PYTHONPATH="$ROOT/bench" python3 -c '
import json, os, sys
from wsload_hist import merged, pct
d, total, pushers, chans, per_conn, rate, secs = sys.argv[1], *map(int, sys.argv[2:8])
rs = [json.loads(open(f"{d}/many{i}.json").read()) for i in range(1, pushers + 1)]
pub = json.loads(open(f"{d}/pubload.json").read())
hist = merged(f"{d}/many{i}.hist" for i in range(1, pushers + 1))
expected = int(os.environ["EXPECTED"])
got = sum(r["messages"] for r in rs)
print(json.dumps({"figure": "channels_many", "connections": total, "channels": chans,
                  "per_connection": per_conn, "all_subscribed": os.environ["ALL"] == "true",
                  "subscriptions": sum(r["subscribed"] for r in rs),
                  "rate_asked": rate, "sent": pub["sent"], "publish_rate": pub["rate"],
                  "expected": expected, "received": got, "missing": expected - got,
                  "pusher_frames": int(os.environ["FRAMES"]),
                  "p50_ms": pct(hist, 50), "p99_ms": pct(hist, 99),
                  "max_ms": max(r["max_ms"] for r in rs)}))
' "$DIR" "$TOTAL" "$PUSHERS" "$CHANNELS" "$PER_CONN" "$MSG_RATE" "$MSG_SECONDS"
  exit 0
fi

# churn
INTERVAL=${INTERVAL:-2}
CHURN_CONNS=${CHURN_CONNS:-1000}
CHURN_CHANNELS=${CHURN_CHANNELS:-1000}
if [ "$CHURN_CHANNELS" = 0 ]; then CHURN_PREFIX=$CHANNEL; else CHURN_PREFIX=churn.; fi
# seq 0..FANOUTS-1 without churn, FANOUTS..2*FANOUTS-1 with, 2*FANOUTS a
# warm-up message first (the first message through collector and store is
# slower), counted in neither phase
start_wsloads fan "$PER" 0 --channel "$CHANNEL" --per-seq $(( 2 * FANOUTS + 1 )) \
  --expect $(( PER * (2 * FANOUTS + 1) )) --hold 3600 --linger 2
FAN_WS=("${WS[@]}")
wait_ready fan "$TOTAL"
FAN_READY=$ALL_READY
sleep 1
fanouts() {
  local j
  for j in $(seq "$1" "$2"); do
    "$BIN/pubload" --mode collect --channel "$CHANNEL" --count 1 --rate 0 --first-seq "$j" >/dev/null
    sleep "$INTERVAL"
  done
}
fanouts $(( 2 * FANOUTS )) $(( 2 * FANOUTS ))
fanouts 0 $(( FANOUTS - 1 ))
start_wsloads churn "$CHURN_CONNS" 90000000 --churn $(( CHURN_RATE / PUSHERS )) \
  --churn-prefix "$CHURN_PREFIX" --churn-channels "$CHURN_CHANNELS" --hold 3600
CHURN_WS=("${WS[@]}")
wait_ready churn 0
sleep 2   # the churn at its rate before the first message
fanouts "$FANOUTS" $(( 2 * FANOUTS - 1 ))
WS=("${CHURN_WS[@]}"); wait_wsloads 0
WS=("${FAN_WS[@]}"); wait_wsloads "${DRAIN_S:-30}"
cat "$DIR"/fan*.json "$DIR"/churn*.json >&2
ALL=$FAN_READY python3 -c '
import json, os, statistics, sys
d, total, pushers, f = sys.argv[1], *map(int, sys.argv[2:5])
fan = [json.loads(open(f"{d}/fan{i}.json").read()) for i in range(1, pushers + 1)]
ch = [json.loads(open(f"{d}/churn{i}.json").read()) for i in range(1, pushers + 1)]
def phase(name, lo, hi, extra):
    got = [sum(r["seq_count"][q] for r in fan) for q in range(lo, hi)]
    mx = [max(r["seq_max_ms"][q] for r in fan) for q in range(lo, hi)]
    print(json.dumps({"figure": name, "fanouts": hi - lo, "clients": total,
                      "all_subscribed": os.environ["ALL"] == "true",
                      "expected": total * (hi - lo), "delivered": sum(got),
                      "median_max_ms": statistics.median(mx), "worst_max_ms": max(mx),
                      "max_ms_each": mx, **extra}))
phase("fanout_without_churn", 0, f, {})
ops = sum(r["churn_subscribes"] + r["churn_unsubscribes"] for r in ch)
phase("fanout_with_churn", f, 2 * f, {
    "churn_per_s": round(sum(r["churn_per_s"] for r in ch)), "churn_ops": ops,
    "churn_answered": sum(r["churn_subscribed"] + r["churn_unsubscribed"] for r in ch),
    "churn_errors": sum(r["churn_errors"] for r in ch),
    "churn_skipped": sum(r["churn_skipped"] for r in ch)})
' "$DIR" "$TOTAL" "$PUSHERS" "$FANOUTS"
