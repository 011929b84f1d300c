#!/usr/bin/env bash
# The whole system on this machine: nats-server, redis-server, authd,
# collector, dispatcher and pusher on free loopback ports; a client connects
# with a freshly minted token, a message is published, and it arrives. Then
# the demo page (pushctl demo) is served and its address printed; on a
# terminal it stays up until Ctrl-C (DEMO_WAIT=0: stop at once, as without
# a terminal). Everything started here is stopped again (by pid) on the way out.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh build -DPUSH_SANITIZE=OFF -DPUSH_FUZZ=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo

BIN=$PWD/build/bin
DIR=$(mktemp -d /tmp/push-demo.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  scripts/servers.sh stop "$DIR"
  echo "demo: stopped everything it started; logs were in $DIR"
}
trap cleanup EXIT

NATS_PORT=$(scripts/free-port.sh); REDIS_PORT=$(scripts/free-port.sh)
WS_PORT=$(scripts/free-port.sh); HTTP_PORT=$(scripts/free-port.sh)
# The page's port: 8090 when it is free, so the address is the same each time.
PAGE_PORT=${DEMO_PAGE_PORT:-8090}
if (exec 3<>"/dev/tcp/127.0.0.1/$PAGE_PORT") 2>/dev/null; then PAGE_PORT=$(scripts/free-port.sh); fi
scripts/servers.sh start "$DIR" "$NATS_PORT" "$REDIS_PORT"

export PUSH_NATS_URL=nats://127.0.0.1:$NATS_PORT
export PUSH_REDIS_URL=redis://127.0.0.1:$REDIS_PORT
export PUSH_JWT_SECRET=demo-secret-$RANDOM$RANDOM

start() { # name args...
  local name=$1; shift
  local mport; mport=$(scripts/free-port.sh)
  "$BIN/$name" --metrics "127.0.0.1:$mport" "$@" >"$DIR/$name.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 200); do
    curl -fs "http://127.0.0.1:$mport/readyz" >/dev/null 2>&1 && { echo "demo: $name ready (metrics on 127.0.0.1:$mport)"; return; }
    sleep 0.05
  done
  echo "demo: $name did not become ready; its log:" >&2; cat "$DIR/$name.log" >&2; exit 1
}
start authd
start collector --store "sqlite:$DIR/push.db" --http "127.0.0.1:$HTTP_PORT"
start dispatcher
start pusher --listen "127.0.0.1:$WS_PORT" --node-id demo-node

TOKEN=$("$BIN/pushctl" token --sub alice --ttl 600)
echo "demo: minted a token for user alice"
"$BIN/pushctl" connect --url "ws://127.0.0.1:$WS_PORT/ws" --token "$TOKEN" --count 1 >"$DIR/client.out" 2>"$DIR/client.err" &
CLIENT=$!
PIDS+=($CLIENT)
for _ in $(seq 1 100); do grep -q welcome "$DIR/client.out" 2>/dev/null && break; sleep 0.05; done
echo "demo: client connected: $(head -1 "$DIR/client.out")"

echo "demo: pushctl publish --to alice --topic greeting '{\"hello\":\"world\"}'"
"$BIN/pushctl" publish --to alice --topic greeting '{"hello":"world"}'
for _ in $(seq 1 100); do kill -0 "$CLIENT" 2>/dev/null || break; sleep 0.05; done
echo "demo: the client received:"
sed 's/^/    /' "$DIR/client.out"
grep -q '"type":"message"' "$DIR/client.out" || { echo "demo: the message did not arrive" >&2; exit 1; }
echo "demo: the message arrived."

"$BIN/pushctl" demo --listen "127.0.0.1:$PAGE_PORT" --ws-url "ws://127.0.0.1:$WS_PORT/ws" \
  --http-url "http://127.0.0.1:$HTTP_PORT" >"$DIR/demo-page.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PAGE_PORT/config.json" >/dev/null 2>&1 && break; sleep 0.05; done
curl -fs "http://127.0.0.1:$PAGE_PORT/" | grep -q push-client.mjs || { echo "demo: the page is not served; its log:" >&2; cat "$DIR/demo-page.log" >&2; exit 1; }
echo "demo: the demo page is at http://127.0.0.1:$PAGE_PORT/?user=alice (publishes through http://127.0.0.1:$HTTP_PORT/v1/messages)"
if [ -t 0 ] && [ "${DEMO_WAIT:-1}" != 0 ]; then
  echo "demo: open it in a browser on this machine; Ctrl-C stops everything"
  trap 'exit 0' INT TERM
  while kill -0 "${PIDS[0]}" 2>/dev/null; do sleep 1; done
fi
