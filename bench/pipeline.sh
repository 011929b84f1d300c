#!/usr/bin/env bash
# The pipeline benchmarks of docs/BENCHMARKS.md.
#   bench/pipeline.sh ingest [COUNT]        durable ingest by one collector (SQLite), 1 recipient each:
#                                           request/reply with 256 in flight, then fire-and-forget
#   bench/pipeline.sh e2e RATE [COUNT]      publish -> collector -> store -> dispatcher -> pusher -> client,
#                                           10,000 connected users, unicast at RATE msgs/s;
#                                           TTL=S stores each message (default 0: live only);
#                                           ACK=1: every client acks every message (as the JS
#                                           client does);
#                                           PUSHERS=N: the users over N pushers (a wsload each);
#                                           reports duplicates (a message id a client got twice)
# Prints one JSON line per figure, then the floors measured in the same run
# (bench/natsfloor, bench/storefloor; docs/BENCHMARKS.md "Floors") and one
# line of ratios, figure / floor. FLOOR_STORE_COUNT: messages storefloor
# commits per batch size (default COUNT, at most 20000); FLOOR_NATS_FLAGS:
# more natsfloor flags (--asap); FLOORS=0 skips the floors. METRICS_DIR=D:
# every service's /metrics saved in D as NAME.txt at the end (bench/common.sh).
source "$(dirname "$0")/common.sh"
what=${1:-ingest}
now_ms() { date +%s%3N; }

accepted() { curl -fs "$METRICS_collector/metrics" | awk '/^push_collect_accepted_total / {print $2}'; }
commits() { bench_metric collector push_collect_commits_total; }
# mean_batch MESSAGES COMMITS: the writer's mean batch, rounded, at least 1
mean_batch() { local m=$(( $2 > 0 ? ($1 + $2 / 2) / $2 : 1 )); echo $(( m < 1 ? 1 : m )); }
floors() { [ "${FLOORS:-1}" != 0 ]; }
# store_floor TTL BATCH...: storefloor's lines at those batch sizes, in $DIR
# (the collector's file system), on stdout
store_floor() {
  local ttl=$1; shift
  "$BIN/storefloor" --dir "$DIR" --ttl "$ttl" --count "${FLOOR_STORE_COUNT:-$(( COUNT < 20000 ? COUNT : 20000 ))}" \
    --batch "$(printf '%s\n' "$@" | sort -un | paste -sd,)" || echo "bench: storefloor failed" >&2
}
# ratios FIGURE KIND LINE...: one JSON line comparing the figures' lines
# with the floors' lines (python below says which ratio is which)
ratios() {
  python3 - "$@" <<'PY'
import json, sys
figure, kind = sys.argv[1], sys.argv[2]
lines = [l for l in (json.loads(a) for a in sys.argv[3:] if a.strip()) if isinstance(l, dict)]
def find(pred):
    return next((l for l in lines if pred(l)), None)
def ratio(a, b):
    return round(a / b, 2) if a is not None and b else None
out = {"figure": figure}
if kind == "ingest":
    req = find(lambda l: l.get("mode") == "request")
    faf = find(lambda l: l.get("figure") == "ingest_fire_and_forget")
    nats = find(lambda l: l.get("figure") == "floor_nats_reqreply")
    def store(b):
        return find(lambda l: l.get("figure") == "floor_store_commit" and l["batch"] == b) or {}
    rb, fb = int(sys.argv[-2]), int(sys.argv[-1])
    out.update({
        "request_per_s": req and req["rate"],
        "floor_nats_reqreply_per_s": nats and nats["per_second"],
        "request_over_floor_nats": ratio(req and req["rate"], nats and nats["per_second"]),
        "request_mean_batch": rb,
        "floor_store_per_s_at_request_batch": store(rb).get("msgs_per_s"),
        "request_over_floor_store": ratio(req and req["rate"], store(rb).get("msgs_per_s")),
        "fire_and_forget_per_s": faf and faf["per_second"],
        "fire_and_forget_mean_batch": fb,
        "floor_store_per_s_at_fire_and_forget_batch": store(fb).get("msgs_per_s"),
        "fire_and_forget_over_floor_store": ratio(faf and faf["per_second"], store(fb).get("msgs_per_s")),
    })
else:
    e2e = find(lambda l: str(l.get("figure", "")).startswith("e2e_unicast")) or {}
    nats = find(lambda l: l.get("figure") == "floor_nats_pubsub") or {}
    store = find(lambda l: l.get("figure") == "floor_store_commit") or {}
    out.update({
        "e2e_p50_ms": e2e.get("p50_ms"), "floor_nats_p50_ms": nats.get("p50_ms"),
        "p50_over_floor_nats": ratio(e2e.get("p50_ms"), nats.get("p50_ms")),
        "e2e_p99_ms": e2e.get("p99_ms"), "floor_nats_p99_ms": nats.get("p99_ms"),
        "p99_over_floor_nats": ratio(e2e.get("p99_ms"), nats.get("p99_ms")),
        "e2e_max_ms": e2e.get("max_ms"), "floor_nats_max_ms": nats.get("max_ms"),
        "max_over_floor_nats": ratio(e2e.get("max_ms"), nats.get("max_ms")),
        "mean_batch": store.get("batch"),
        "floor_store_p50_ms": store.get("p50_ms"), "floor_store_p99_ms": store.get("p99_ms"),
        "p50_over_floor_store": ratio(e2e.get("p50_ms"), store.get("p50_ms")),
        "p99_over_floor_store": ratio(e2e.get("p99_ms"), store.get("p99_ms")),
        "received_per_s": e2e.get("received_per_s"),
        "floor_store_msgs_per_s": store.get("msgs_per_s"),
        "received_over_floor_store": ratio(e2e.get("received_per_s"), store.get("msgs_per_s")),
    })
print(json.dumps(out))
PY
}

bench_servers
bench_start collector collector --store "sqlite:$DIR/push.db"

if [ "$what" = ingest ]; then
  COUNT=${2:-20000}
  req=$("$BIN/pubload" --mode request --count "$COUNT" --rate 0 --inflight ${INFLIGHT:-256} --ttl 3600)
  echo "$req"
  before=$(accepted); start=$(now_ms); commits_before=$(commits)
  # PERF_OUT=FILE: a system-wide perf profile of the first second of fire-and-forget
  [ -n "${PERF_OUT:-}" ] && { perf record -a -g -o "$PERF_OUT" -- sleep "${PERF_S:-1}" >/dev/null 2>&1 & }
  "$BIN/pubload" --mode collect --count "$COUNT" --rate 0 --ttl 3600 >/dev/null
  while [ "$(accepted)" -lt $(( before + COUNT )) ]; do
    [ $(( $(now_ms) - start )) -gt 300000 ] && { echo "bench: ingest stalled at $(accepted)" >&2; break; }
    sleep 0.05
  done
  ms=$(( $(now_ms) - start ))
  faf="{\"figure\":\"ingest_fire_and_forget\",\"stored\":$(( $(accepted) - before )),\"ms\":$ms,\"per_second\":$(( ($(accepted) - before) * 1000 / ms ))}"
  echo "$faf"
  floors || exit 0
  # the floors, on the same servers, the collector idle: NATS request/reply
  # at the same window, and the store at each phase's mean batch
  request_batch=$(mean_batch "$before" "$commits_before")
  faf_batch=$(mean_batch $(( $(accepted) - before )) $(( $(commits) - commits_before )))
  nf=$("$BIN/natsfloor" --mode reqreply --inflight ${INFLIGHT:-256} --count "$COUNT" ${FLOOR_NATS_FLAGS:-}) ||
    echo "bench: natsfloor did not get every reply" >&2
  [ -z "$nf" ] || echo "$nf"
  sf=$(store_floor 3600 "$request_batch" "$faf_batch")
  [ -z "$sf" ] || echo "$sf"
  mapfile -t sfl <<<"$sf"
  ratios ingest_vs_floor ingest "$req" "$faf" "$nf" "${sfl[@]}" "$request_batch" "$faf_batch"
  exit 0
fi

RATE=${2:-10000}
COUNT=${3:-$(( RATE * 10 ))}
USERS=10000
# the NATS floor at the same rate and count, before the clients connect
if floors; then
  nf=$("$BIN/natsfloor" --mode pubsub --rate "$RATE" --count "$COUNT" ${FLOOR_NATS_FLAGS:-}) ||
    echo "bench: natsfloor did not get every message" >&2
  [ -z "$nf" ] || echo "$nf"
fi
bench_start authd authd
bench_start dispatcher dispatcher
DUPS=1 bench_clients bench-e2e $USERS "$COUNT" $(( COUNT / RATE + 120 )) "${PUSHERS:-1}"
sleep 1
# PERF_OUT=FILE: a system-wide perf profile of 4 s of the publishing
[ -n "${PERF_OUT:-}" ] && { (sleep 2; perf record -a -g -o "$PERF_OUT" -- sleep 4 >/dev/null 2>&1) & }
"$BIN/pubload" --mode collect --count "$COUNT" --rate "$RATE" --users $USERS --ttl "${TTL:-0}"
# into a file, not $(...): its wait for wsload must run in this shell
bench_latency_report "e2e_unicast_ttl${TTL:-0}" "$RATE" "$COUNT" >"$DIR/e2e.line"
cat "$DIR/e2e.line"
e2e=$(cat "$DIR/e2e.line")
floors || exit 0
# the store at the writer's mean batch in this run, with this run's ttl
batch=$(mean_batch "$(accepted)" "$(commits)")
sf=$(store_floor "${TTL:-0}" "$batch")
[ -z "$sf" ] || echo "$sf"
ratios e2e_vs_floor e2e "$e2e" "$nf" "$sf"
