#!/usr/bin/env bash
# The edge benchmarks of docs/BENCHMARKS.md: connections held, memory per
# connection, connect storm, broadcast fan-out, unicast throughput/latency.
#
#   bench/edge.sh [CONNS] [PUSHERS]     (defaults 100000 and 6)
#
# Each pusher process is its own node on its own port; the open-file cap of
# 20,000 per process means 100k connections need at least 6 pushers and 6
# wsload processes. Prints one JSON line per figure.
source "$(dirname "$0")/common.sh"
CONNS=${1:-100000}
PUSHERS=${2:-6}
PER=$(( (CONNS + PUSHERS - 1) / PUSHERS ))
RATE=${RATE:-20000}        # total connect rate asked of the load generators
SOURCES=${SOURCES:-50}

bench_servers
bench_start authd authd
PORTS=()
for i in $(seq 1 "$PUSHERS"); do
  p=$(free_port); PORTS+=("$p")
  bench_start "pusher$i" pusher --listen "127.0.0.1:$p" --node-id "bench-$i"
done
base=0
for i in $(seq 1 "$PUSHERS"); do
  pid_var="PID_pusher$i"; base=$(( base + $(rss_kib "${!pid_var}") ))
done
echo "{\"figure\":\"baseline\",\"pushers\":$PUSHERS,\"rss_kib\":$base}"

# connect storm: every wsload opens PER connections to its pusher
WS=()
for i in $(seq 1 "$PUSHERS"); do
  "$BIN/wsload" --url "ws://127.0.0.1:${PORTS[$((i-1))]}/ws" --conns "$PER" --rate $(( RATE / PUSHERS )) \
    --sources "$SOURCES" --first-user $(( (i-1) * PER )) --hold 600 --expect "$PER" --linger 3 \
    >"$DIR/wsload$i.json" 2>"$DIR/wsload$i.err" &
  WS+=($!)
done
now_ms() { date +%s%3N; }
# (STORM_PERF_OUT=FILE: a system-wide perf profile of 2 s of the storm)
if [ -n "${STORM_PERF_OUT:-}" ]; then perf record -a -g -o "$STORM_PERF_OUT" -- sleep 2 >/dev/null 2>&1 & fi
start=$(now_ms)
target=$(( PER * PUSHERS ))
URLS=()
for i in $(seq 1 "$PUSHERS"); do m="METRICS_pusher$i"; URLS+=("${!m}/metrics"); done
while :; do
  # one curl for every pusher: the polling itself costs CPU the storm needs
  total=$(curl -fs "${URLS[@]}" | awk '/^push_pusher_connections / {n += $2} END {print n + 0}')
  [ "$total" -ge "$target" ] && break
  if [ $(( $(now_ms) - start )) -gt 120000 ]; then echo "bench: only $total of $target connections after 120 s" >&2; break; fi
  sleep 0.1
done
elapsed_ms=$(( $(now_ms) - start ))
echo "{\"figure\":\"connect_storm\",\"connections\":$total,\"ms\":$elapsed_ms,\"per_second\":$(( total * 1000 / elapsed_ms ))}"
# HOLD_S=N: hold the connections N seconds (pings, idle sweeps) and report
# how many are still there and the pushers' CPU meanwhile.
cpu_ticks() { local t=0 pid_var; for i in $(seq 1 "$PUSHERS"); do pid_var="PID_pusher$i"
  t=$(( t + $(awk '{print $14 + $15}' "/proc/${!pid_var}/stat") )); done; echo "$t"; }
if [ -n "${HOLD_S:-}" ]; then
  t0=$(cpu_ticks); sleep "$HOLD_S"; t1=$(cpu_ticks)
  held=$(curl -fs "${URLS[@]}" | awk '/^push_pusher_connections / {n += $2} END {print n + 0}')
  echo "{\"figure\":\"held\",\"seconds\":$HOLD_S,\"connections\":$held,\"pusher_cpu_percent\":$(( (t1 - t0) * 100 / $(getconf CLK_TCK) / HOLD_S ))}"
fi
sleep 2
rss=0
for i in $(seq 1 "$PUSHERS"); do pid_var="PID_pusher$i"; rss=$(( rss + $(rss_kib "${!pid_var}") )); done
echo "{\"figure\":\"memory\",\"connections\":$total,\"rss_kib\":$rss,\"bytes_per_conn\":$(( (rss - base) * 1024 / (total > 0 ? total : 1) ))}"

# broadcast fan-out: one message to everyone; each wsload stops at its first message
# (PERF_OUT=FILE: a system-wide perf profile of the second around it)
if [ -n "${PERF_OUT:-}" ]; then perf record -a -g -o "$PERF_OUT" -- sleep "${PERF_S:-1}" >/dev/null 2>&1 & sleep 0.2; fi
t0=$(cpu_ticks)
"$BIN/pubload" --mode broadcast --count 1 --rate 0 >/dev/null
# the pushers' own CPU for the fan-out (user + system, 10 ms ticks), read
# once every wsload has printed (they linger before closing), to tell the
# pushers' cost from the load generators' on the same two cores
for i in $(seq 1 "$PUSHERS"); do until [ -s "$DIR/wsload$i.json" ]; do sleep 0.01; done; done
echo "{\"figure\":\"broadcast_pusher_cpu\",\"ms\":$(( ($(cpu_ticks) - t0) * 1000 / $(getconf CLK_TCK) ))}"
for pid in "${WS[@]}"; do wait "$pid" || true; done
cat "$DIR"/wsload*.json | python3 -c '
import json, sys
rs = [json.loads(l) for l in sys.stdin if l.strip()]
got = sum(r["messages"] for r in rs)
mx = max(r["max_ms"] for r in rs)
p99 = max(r["p99_ms"] for r in rs)
print(json.dumps({"figure": "broadcast", "delivered": got, "max_ms": mx, "worst_p99_ms": p99,
                  "frames_per_s": round(got / (mx / 1000)) if mx else None}))'
