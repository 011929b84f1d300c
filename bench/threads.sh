#!/usr/bin/env bash
# Where the CPU goes while bench/pipeline.sh runs: the machine's CPU split
# (/proc/stat) and, per thread of every process of the pipeline, CPU time,
# time spent runnable but waiting for a core, and times scheduled
# (/proc/PID/task/TID/schedstat), over a window in the middle of the
# publishing. Prints one line for the machine, one per thread with over
# 50 ms of CPU in the window (processes' threads of one name summed), then
# pipeline.sh's e2e line.
#   bench/threads.sh [RATE] [COUNT]     (default 10000 300000; TTL as pipeline.sh, default 86400)
#   SKIP_S: seconds from the start to the window (default 22: the 10,000
#   clients connect first); WINDOW_S: its length (default 10).
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-10000}
COUNT=${2:-300000}
out=$(mktemp -d /tmp/push-threads.XXXXXX)
TTL=${TTL:-86400} FLOORS=0 bench/pipeline.sh e2e "$RATE" "$COUNT" 2>/dev/null | tail -1 >"$out/e2e" &
run=$!
trap 'kill "$run" 2>/dev/null || true' EXIT # on an error here, the run stops too
sleep "${SKIP_S:-22}"
snap() {
  local p t line
  for p in $(pgrep -x collector) $(pgrep -x dispatcher) $(pgrep -x pusher) $(pgrep -x authd) \
      $(pgrep -x nats-server) $(pgrep -x redis-server) $(pgrep -x wsload) $(pgrep -x pubload); do
    for t in /proc/"$p"/task/*; do
      line="$(cat /proc/"$p"/comm 2>/dev/null)/$(cat "$t"/comm 2>/dev/null) $(cat "$t"/schedstat 2>/dev/null)" || true
      # a thread that ended between the listing and the read gives a short line
      if [ "$(wc -w <<<"$line")" -eq 4 ]; then echo "$line"; fi
    done
  done
}
head -1 /proc/stat >"$out/stat1"; snap >"$out/snap1"
sleep "${WINDOW_S:-10}"
head -1 /proc/stat >"$out/stat2"; snap >"$out/snap2"
wait "$run"
python3 - "$out" "${WINDOW_S:-10}" <<'PY'
import sys
out, window = sys.argv[1], float(sys.argv[2])
a = list(map(int, open(f"{out}/stat1").read().split()[1:]))
b = list(map(int, open(f"{out}/stat2").read().split()[1:]))
d = [y - x for x, y in zip(a, b)]
tot = sum(d)
print('{"machine": {"user_pct": %.1f, "system_pct": %.1f, "softirq_pct": %.1f, "idle_pct": %.1f, "window_s": %g}}'
      % (100 * d[0] / tot, 100 * d[2] / tot, 100 * d[6] / tot, 100 * d[3] / tot, window))
def load(path):
    r = {}
    for line in open(path):
        name, run, wait, slices = line.rsplit(None, 3)
        t = r.setdefault(name, [0, 0, 0])
        t[0] += int(run); t[1] += int(wait); t[2] += int(slices)
    return r
s1, s2 = load(f"{out}/snap1"), load(f"{out}/snap2")
rows = []
for k, v in s2.items():
    if k in s1:
        run, wait, n = (v[0] - s1[k][0]) / 1e6, (v[1] - s1[k][1]) / 1e6, v[2] - s1[k][2]
        if run > 50:
            rows.append((run, k, wait, n))
for run, k, wait, n in sorted(rows, reverse=True):
    print('{"thread": "%s", "cpu_ms": %.0f, "runq_wait_ms": %.0f, "scheduled": %d, "wait_per_schedule_ms": %.3f}'
          % (k, run, wait, n, wait / n if n else 0))
PY
cat "$out/e2e"
rm -rf "$out"
