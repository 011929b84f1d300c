#!/usr/bin/env bash
# Install every Debian 12 package the project needs to build, test and run.
# Idempotent: when everything is present it says so and touches nothing.
set -euo pipefail

PACKAGES=(
  # build
  gcc make cmake pkg-config clang libclang-rt-14-dev protobuf-c-compiler
  clang-format git
  # libraries
  libnats-dev libwebsockets-dev libhiredis-dev libmongoc-dev libbson-dev
  libprotobuf-c-dev libjansson-dev libsqlite3-dev libssl-dev libmicrohttpd-dev
  libev-dev libwebsockets-evlib-ev
  # servers the system runs against
  nats-server redis-server redis-tools
  # tests and demo
  python3 python3-websockets curl procps iproute2
  # the JavaScript client's tests (Node 20+) and the demo page's browser test
  nodejs chromium
  # the Helm chart's test: its renderer (Go, sprig, yaml.v3) and a YAML parser
  golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev python3-yaml
)

# The browser test's npm packages (puppeteer-core, no browser download: it
# drives Debian's chromium), from the committed lock; skipped when
# node_modules was installed from this very lock.
npm_deps() {
  local dir; dir="$(cd "$(dirname "$0")/.." && pwd)/integration/js"
  local stamp="$dir/node_modules/.push-lock.sha256"
  local want; want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "install-deps: npm packages of integration/js already installed"
    return
  fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "install-deps: npm missing; installing Debian's npm"
    $SUDO apt-get install -y -qq --no-install-recommends npm >/dev/null
  fi
  echo "install-deps: npm ci in integration/js"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" >"$stamp"
}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages already installed"
  npm_deps
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's packages start their own servers where init allows it; we run our
# own on chosen ports, so stop the packaged ones if they did start.
for svc in redis-server nats-server; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    $SUDO systemctl stop "$svc" || true
  fi
done
npm_deps
echo "install-deps: done"
