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

# bench_clients NODE USERS COUNT HOLD_S [PUSHERS]: start PUSHERS (default 1)
# pushers on free ports and, per pusher, a wsload of USERS/PUSHERS clients
# (users in contiguous ranges: pusher i holds u<(i-1)*USERS/PUSHERS>..) that
# stops after its share of COUNT message frames (pubload cycles through the
# users, so each range gets COUNT/PUSHERS); wait until every client is
# authenticated. The first pusher is NODE (service name pusher), pusher i is
# NODE-i (service name pusher<i>), its wsload's TIMELINE file TIMELINE.i.
# Sets PUSHER_NAMES and WS_PIDS.
bench_clients() {
  local node=$1 users=$2 count=$3 hold=$4 n=${5:-1} port i per name id suffix c
  per=$(( users / n ))
  PUSHER_NAMES=(); WS_PIDS=()
  for i in $(seq 1 "$n"); do
    port=$(free_port)
    if [ "$i" = 1 ]; then name=pusher id=$node suffix=; else name=pusher$i id=$node-$i suffix=.$i; fi
    bench_start "$name" pusher --listen "127.0.0.1:$port" --node-id "$id"
    PUSHER_NAMES+=("$name")
    "$BIN/wsload" --url "ws://127.0.0.1:$port/ws" --conns "$per" --first-user $(( (i - 1) * per )) \
      --rate $(( 5000 / n )) --sources 10 --hold "$hold" --expect $(( count / n )) \
      --hist "$DIR/wsload$i.hist" ${TIMELINE:+--timeline "$TIMELINE$suffix"} ${DUPS:+--dups} \
      ${ACK:+--ack} >"$DIR/wsload$i.json" &
    WS_PIDS+=($!)
  done
  for _ in $(seq 1 200); do
    c=0
    for name in "${PUSHER_NAMES[@]}"; do
      c=$(( c + $(bench_metric "$name" push_pusher_connections) ))
    done
    [ "$c" -ge $(( per * n )) ] && return 0
    sleep 0.1
  done
  echo "bench: only $c of $(( per * n )) clients connected" >&2
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
# interpolated inside its histogram bucket (bounds in lib/metrics.h); the
# pushers' histograms (PUSHER_NAMES) are summed.
bench_hops() {
  local name url
  for name in collector dispatcher "${PUSHER_NAMES[@]:-pusher}"; do
    eval "url=\${METRICS_$name:-http://0}"
    curl -fs "$url/metrics" 2>/dev/null || true
  done | python3 -c '
import json, sys
sums = {}
for line in sys.stdin:
    if "_bucket{le=" not in line:
        continue
    name, rest = line.split("_bucket{le=\"", 1)
    le, count = rest.split("\"} ")
    key = (name, float(le))
    sums[key] = sums.get(key, 0) + int(count)
hist = {}
for (name, le), count in sorted(sums.items()):
    hist.setdefault(name, []).append((le, count))
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

# bench_latency_report FIGURE RATE COUNT: wait for the wsloads, print one
# JSON line (over several pushers: their wsloads' histograms merged), with
# where repeats came from (stream redeliveries, hand-over retries) and how
# many the pushers kept off the wire.
bench_latency_report() {
  local pid name dropped=0
  for pid in "${WS_PIDS[@]}"; do wait "$pid" || true; done
  for name in "${PUSHER_NAMES[@]}"; do
    dropped=$(( dropped + $(bench_metric "$name" push_pusher_repeats_dropped_total) ))
  done
  REPEATS="{\"pusher_repeats_dropped\": $dropped,
    \"stream_redelivered\": $(bench_metric dispatcher push_dispatch_redelivered_total),
    \"handover_retries\": $(bench_metric collector push_collect_handover_retries_total),
    \"handover_errors\": $(bench_metric collector push_collect_handover_errors_total),
    \"acks_recorded\": $(bench_metric collector push_collect_acks_total)}" \
  HOPS=$(bench_hops) PYTHONPATH="$ROOT/bench" python3 -c '
import json, os, sys
from wsload_hist import merged, pct
d, n = sys.argv[1], int(sys.argv[5])
rs = [json.load(open(f"{d}/wsload{i}.json")) for i in range(1, n + 1)]
hist = merged(f"{d}/wsload{i}.hist" for i in range(1, n + 1))
got = sum(r["messages"] for r in rs)
# first frame to last over all (CLOCK_MONOTONIC is one clock for all processes)
firsts = [r["first_msg_mono_us"] for r in rs if r["messages"]]
span = round((max(r["last_msg_mono_us"] for r in rs) - min(firsts)) / 1e6, 3) if firsts else 0
print(json.dumps({"figure": sys.argv[2], "rate_asked": int(sys.argv[3]), "sent": int(sys.argv[4]),
                  **({"pushers": n} if n > 1 else {}),
                  "received": got, "seconds": span,
                  "received_per_s": round(got / span) if span else None,
                  "p50_ms": pct(hist, 50), "p99_ms": pct(hist, 99),
                  "max_ms": max(r["max_ms"] for r in rs),
                  "duplicates": sum(r.get("duplicates", 0) for r in rs),
                  "acks_sent": sum(r.get("acks", 0) for r in rs),
                  **json.loads(os.environ["REPEATS"]),
                  "hops": json.loads(os.environ["HOPS"])}))' \
    "$DIR" "$1" "$2" "$3" "${#WS_PIDS[@]}"
}
