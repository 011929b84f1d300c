# Shared by the bench scripts: start servers and services on free loopback
# ports, remember every pid, stop them all on exit. Source it, don't run it.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${PUSH_BIN:-$ROOT/build/bin}
DIR=$(mktemp -d /tmp/push-bench.XXXXXX)
PIDS=()
# METRICS_DIR=D: every service's /metrics is saved there as NAME.txt when the bench ends
bench_cleanup() {
  if [ -n "${METRICS_DIR:-}" ]; then
    mkdir -p "$METRICS_DIR"
    for v in ${!METRICS_*}; do
      [ "$v" = METRICS_DIR ] || curl -fs "${!v}/metrics" >"$METRICS_DIR/${v#METRICS_}.txt" || true
    done
  fi
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  "$ROOT/scripts/servers.sh" stop "$DIR"
}
trap bench_cleanup EXIT

free_port() { "$ROOT/scripts/free-port.sh"; }

bench_servers() {
  NATS_PORT=$(free_port); REDIS_PORT=$(free_port)
  "$ROOT/scripts/servers.sh" start "$DIR" "$NATS_PORT" "$REDIS_PORT" >&2
  export PUSH_NATS_URL=nats://127.0.0.1:$NATS_PORT PUSH_REDIS_URL=redis://127.0.0.1:$REDIS_PORT
  export PUSH_JWT_SECRET=bench-secret PUSH_LOG_LEVEL=${PUSH_LOG_LEVEL:-warn}
}

# bench_start NAME PROGRAM ARGS...: start and wait for /readyz; sets METRICS_<NAME>.
bench_start() {
  local name=$1 prog=$2; shift 2
  local mport; mport=$(free_port)
  "$BIN/$prog" --metrics "127.0.0.1:$mport" "$@" >"$DIR/$name.log" 2>&1 &
  PIDS+=($!)
  eval "PID_${name//-/_}=$!"
  eval "METRICS_${name//-/_}=http://127.0.0.1:$mport"
  for _ in $(seq 1 400); do
    curl -fs "http://127.0.0.1:$mport/readyz" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "bench: $name not ready; log:" >&2; tail -20 "$DIR/$name.log" >&2; return 1
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# bench_clients NODE USERS COUNT HOLD_S: start pusher NODE on a free port and
# a wsload of USERS clients that stops after COUNT message frames; wait until
# every client is authenticated. Sets WS (wsload's pid).
bench_clients() {
  local node=$1 users=$2 count=$3 hold=$4 port
  port=$(free_port)
  bench_start pusher pusher --listen "127.0.0.1:$port" --node-id "$node"
  "$BIN/wsload" --url "ws://127.0.0.1:$port/ws" --conns "$users" --rate 5000 --sources 10 \
    --hold "$hold" --expect "$count" ${TIMELINE:+--timeline "$TIMELINE"} ${DUPS:+--dups} \
    ${ACK:+--ack} \
    >"$DIR/wsload.json" &
  WS=$!
  local c
  for _ in $(seq 1 200); do
    c=$(curl -fs "$METRICS_pusher/metrics" | awk '/^push_pusher_connections / {print $2}')
    [ "${c:-0}" -ge "$users" ] && return 0
    sleep 0.1
  done
  echo "bench: only ${c:-0} of $users clients connected" >&2
}

# bench_metric NAME SERIES: the value of SERIES on service NAME's /metrics (0 when absent).
bench_metric() {
  local url; eval "url=\${METRICS_$1:-}"
  [ -n "$url" ] || { echo 0; return; }
  curl -fs "$url/metrics" | awk -v s="$2" '$1 == s {print $2; f=1} END {if (!f) print 0}'
}

# bench_hops: per hop, the p50/p99 (ms) of a message's age since the
# collector accepted it (its id's millisecond, so each figure is 0-1 ms
# high), read from the services' age histograms: stored (committed),
# handed_over (the stream acked it), dispatched (published to its nodes),
# pushed (written to its connections); a JSON object. A quantile is
# interpolated inside its histogram bucket (bounds in lib/metrics.h).
bench_hops() {
  local c d p
  c=$(curl -fs "${METRICS_collector:-http://0}/metrics" 2>/dev/null || true)
  d=$(curl -fs "${METRICS_dispatcher:-http://0}/metrics" 2>/dev/null || true)
  p=$(curl -fs "${METRICS_pusher:-http://0}/metrics" 2>/dev/null || true)
  printf '%s\n%s\n%s\n' "$c" "$d" "$p" | python3 -c '
import json, sys
hist = {}
for line in sys.stdin:
    if "_bucket{le=" not in line:
        continue
    name, rest = line.split("_bucket{le=\"", 1)
    le, count = rest.split("\"} ")
    hist.setdefault(name, []).append((float(le), int(count)))
def q(b, f):
    total = b[-1][1]
    if not total:
        return None
    want, lo, below = f * total, 0.0, 0
    for le, cum in b:
        if cum >= want:
            if le == float("inf"):
                return round(lo * 1000, 2)
            frac = (want - below) / (cum - below) if cum > below else 1
            return round((lo + (le - lo) * frac) * 1000, 2)
        lo, below = le, cum
names = {"stored": "push_collect_stored_age_seconds",
         "handed_over": "push_collect_handover_age_seconds",
         "dispatched": "push_dispatch_age_seconds",
         "pushed": "push_pusher_delivery_age_seconds"}
out = {}
for hop, n in names.items():
    if n in hist:
        out[hop] = {"p50_ms": q(hist[n], 0.5), "p99_ms": q(hist[n], 0.99), "count": hist[n][-1][1]}
print(json.dumps(out))'
}

# bench_latency_report FIGURE RATE COUNT: wait for wsload, print one JSON line,
# with where repeats came from (stream redeliveries, hand-over retries) and
# how many the pusher kept off the wire.
bench_latency_report() {
  wait "$WS" || true
  REPEATS="{\"pusher_repeats_dropped\": $(bench_metric pusher push_pusher_repeats_dropped_total),
    \"stream_redelivered\": $(bench_metric dispatcher push_dispatch_redelivered_total),
    \"handover_retries\": $(bench_metric collector push_collect_handover_retries_total),
    \"handover_errors\": $(bench_metric collector push_collect_handover_errors_total),
    \"acks_recorded\": $(bench_metric collector push_collect_acks_total)}" \
  HOPS=$(bench_hops) python3 -c '
import json, os, sys
r = json.load(open(sys.argv[1]))
span = r["message_span_s"]
print(json.dumps({"figure": sys.argv[2], "rate_asked": int(sys.argv[3]), "sent": int(sys.argv[4]),
                  "received": r["messages"], "seconds": span,
                  "received_per_s": round(r["messages"] / span) if span else None,
                  "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "max_ms": r["max_ms"],
                  "duplicates": r.get("duplicates"), "acks_sent": r.get("acks", 0),
                  **json.loads(os.environ["REPEATS"]),
                  "hops": json.loads(os.environ["HOPS"])}))' \
    "$DIR/wsload.json" "$1" "$2" "$3"
}
