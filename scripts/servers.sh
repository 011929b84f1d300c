#!/usr/bin/env bash
# Start or stop a local nats-server (with JetStream) and redis-server with
# their data in a folder of our own, and stop exactly what was started (by pid).
#
#   scripts/servers.sh start DIR NATS_PORT REDIS_PORT
#   scripts/servers.sh stop DIR
set -euo pipefail

wait_port() { # port
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "servers: nothing listening on 127.0.0.1:$1" >&2
  return 1
}

case "${1:-}" in
start)
  dir=$2 nats_port=$3 redis_port=$4
  mkdir -p "$dir/jetstream"
  # max_payload above the collector's 1 MiB publish limit (see docs/OPERATIONS.md)
  echo "max_payload: 4194304" >"$dir/nats.conf"
  nats-server -c "$dir/nats.conf" -a 127.0.0.1 -p "$nats_port" -js -sd "$dir/jetstream" >"$dir/nats.log" 2>&1 &
  echo $! >"$dir/nats.pid"
  redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no --dir "$dir" \
    >"$dir/redis.log" 2>&1 &
  echo $! >"$dir/redis.pid"
  wait_port "$nats_port"
  wait_port "$redis_port"
  echo "servers: nats-server on 127.0.0.1:$nats_port (pid $(cat "$dir/nats.pid")), redis-server on 127.0.0.1:$redis_port (pid $(cat "$dir/redis.pid"))"
  ;;
stop)
  dir=$2
  for name in nats redis; do
    f="$dir/$name.pid"
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    fi
    rm -f "$f"
  done
  ;;
*)
  echo "usage: $0 start DIR NATS_PORT REDIS_PORT | stop DIR" >&2
  exit 2
  ;;
esac
