#!/usr/bin/env bash
# Install every Debian 12 package the project needs to build, test and run.
# Idempotent: when everything is present it says so and touches nothing.
set -euo pipefail

PACKAGES=(
  # build
  gcc make cmake pkg-config clang libclang-rt-14-dev protobuf-c-compiler
  # libraries
  libnats-dev libwebsockets-dev libhiredis-dev libmongoc-dev libbson-dev
  libprotobuf-c-dev libjansson-dev libsqlite3-dev libssl-dev libmicrohttpd-dev
  libev-dev libwebsockets-evlib-ev
  # servers the system runs against
  nats-server redis-server redis-tools
  # tests and demo
  python3 python3-websockets curl procps iproute2
  # the Helm chart's test: its renderer (Go, sprig, yaml.v3) and a YAML parser
  golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev python3-yaml
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
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
echo "install-deps: done"
