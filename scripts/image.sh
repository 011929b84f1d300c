#!/usr/bin/env bash
# Build the push container image (deploy/Containerfile) without any
# registry: both base images are made from Debian 12 packages with
# mmdebstrap and imported into podman; then podman builds the image from
# the committed tree (git archive HEAD) and runs each program's --version
# in it as a check.
#
# usage: scripts/image.sh [IMAGE]    (default push:<version>)
# env:   PUSH_IMAGE_WORK   cache folder for the base tarballs (/var/tmp/push-image)
#        DEBIAN_MIRROR     http://deb.debian.org/debian
#        STORAGE_DRIVER    podman's storage driver (default: overlay if it works, else vfs)
# Needs root (mmdebstrap, podman). Installs podman, mmdebstrap and runc with
# apt-get on first use: they are not part of CI (scripts/install-deps.sh).
# runc, not crun: crun fails in this sandbox; the ulimits keep podman from
# asking for more than the sandbox allows.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^set(PUSH_VERSION "\(.*\)")$/\1/p' CMakeLists.txt)
image=${1:-push:$version}
work=${PUSH_IMAGE_WORK:-/var/tmp/push-image}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
ulimits=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

# Runtime libraries of the five programs (ldd of each, and the libev plugin
# libwebsockets loads at run time); apt brings their own dependencies.
runtime_pkgs=(libnats3.4 libwebsockets17 libwebsockets-evlib-ev libev4 libhiredis0.14
  libmongoc-1.0-0 libbson-1.0-0 libprotobuf-c1 libjansson4 libsqlite3-0 libssl3 libmicrohttpd12
  passwd)
build_pkgs=(gcc libc6-dev make cmake pkg-config protobuf-c-compiler binutils python3
  libnats-dev libwebsockets-dev libhiredis-dev libmongoc-dev libbson-dev libprotobuf-c-dev
  libjansson-dev libsqlite3-dev libssl-dev libmicrohttpd-dev libev-dev libwebsockets-evlib-ev)

say() { echo "image: $*"; }
# retag TAG COMMAND...: run COMMAND (which tags TAG anew), then remove the
# image TAG named before, if it is another one, so rebuilds leave no
# untagged images behind (one still used by a container stays).
retag() {
  local tag=$1 old new
  shift
  old=$(podman image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
  "$@"
  new=$(podman image inspect --format '{{.Id}}' "$tag")
  if [ -n "$old" ] && [ "$old" != "$new" ]; then
    podman rmi "$old" >/dev/null 2>&1 || true
  fi
}

need=()
for p in podman mmdebstrap runc; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ -z "${STORAGE_DRIVER:-}" ]; then
  if podman --storage-driver overlay info >/dev/null 2>&1; then
    export STORAGE_DRIVER=overlay
  else
    export STORAGE_DRIVER=vfs
  fi
fi
say "podman storage driver $STORAGE_DRIVER"

mkdir -p "$work"
# What Debian's slim images leave out: documentation, manual pages, locales.
slim=(--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/lintian/*')

# base NAME PACKAGES...: a minbase bookworm root file system with the
# packages, cached in $work by its package list, imported as
# localhost/push-base-NAME:bookworm.
base() {
  local name=$1
  shift
  local tar="$work/$name.tar" stamp="$work/$name.pkgs" key="$* ${slim[*]}"
  if [ ! -s "$tar" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$key" ]; then
    say "mmdebstrap $name base: $*"
    rm -f "$tar"
    mmdebstrap --quiet --variant=minbase --include="$(IFS=,; echo "$*")" "${slim[@]}" \
      --aptopt='APT::Install-Recommends "false"' \
      --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
      bookworm "$tar" \
      "deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
      "deb $security bookworm-security main"
    echo "$key" >"$stamp"
  fi
  retag "localhost/push-base-$name:bookworm" \
    podman import --quiet "$tar" "localhost/push-base-$name:bookworm" >/dev/null
  say "imported localhost/push-base-$name:bookworm ($(du -h "$tar" | cut -f1) tar)"
}
base runtime "${runtime_pkgs[@]}"
base build "${build_pkgs[@]}"

# The build context is what is committed, nothing else (no build folders).
ctx=$(mktemp -d "$work/ctx.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
git archive HEAD | tar -x -C "$ctx"
revision=$(git rev-parse HEAD)
source=$(git config --get remote.origin.url || true)
source=${source:-"git:$(pwd)@$revision"}

say "building $image from $revision"
# --layers=false: no intermediate images (the build stage's would be kept
# otherwise, 600 MB per build); the context changes with every commit anyway.
retag "$image" podman build --isolation=chroot --layers=false "${ulimits[@]}" \
  -f "$ctx/deploy/Containerfile" \
  --build-arg VERSION="$version" --build-arg REVISION="$revision" \
  --build-arg SOURCE="$source" --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  -t "$image" "$ctx"

# Check: each program answers --version, as the non-root user.
run() { podman run --rm --runtime runc "${ulimits[@]}" "$image" "$@"; }
for prog in authd collector dispatcher pusher pushctl; do
  got=$(run "$prog" --version)
  [ "$got" = "$prog $version" ] || { say "FAILED: $prog --version printed '$got'"; exit 1; }
  say "ok: $got"
done
uid=$(run id -u)
[ "$uid" = 10001 ] || { say "FAILED: runs as uid $uid, not 10001"; exit 1; }
say "ok: runs as uid $uid"
# The pusher starts (libwebsockets loads its libev plugin only now), serves
# /healthz while NATS is absent, and stops with 0 on SIGTERM.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
name="push-image-check-$$"
podman run -d --name "$name" --runtime runc "${ulimits[@]}" --network host "$image" pusher \
  --listen "127.0.0.1:$((port + 1))" --metrics "127.0.0.1:$port" --node-id check \
  --nats nats://127.0.0.1:1 >/dev/null
health=000
for _ in $(seq 50); do
  health=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz" || true)
  [ "$health" = 200 ] && break
  sleep 0.2
done
podman stop -t 15 "$name" >/dev/null
code=$(podman inspect --format '{{.State.ExitCode}}' "$name")
podman rm "$name" >/dev/null
[ "$health" = 200 ] && [ "$code" = 0 ] || { say "FAILED: pusher /healthz $health, exit $code"; exit 1; }
say "ok: pusher serves /healthz and exits 0 on SIGTERM"
say "$image: $(podman image inspect --format '{{.Size}}' "$image" | numfmt --to=iec) ($(podman image inspect --format '{{index .Labels "org.opencontainers.image.version"}} {{index .Labels "org.opencontainers.image.revision"}}' "$image"))"
