#!/bin/sh
# The image's entrypoint: the first argument picks the program
# (podman run IMAGE pusher --listen 0.0.0.0:8080 ...); anything else runs as
# a command, so `podman run -it IMAGE sh` still gives a shell.
set -e
case "${1:-}" in
authd | collector | dispatcher | pusher | pushctl)
    prog=$1
    shift
    exec "/usr/local/bin/$prog" "$@"
    ;;
"" | -h | --help)
    echo "usage: IMAGE authd|collector|dispatcher|pusher|pushctl [flags] (each takes --help)"
    exit 0
    ;;
*)
    exec "$@"
    ;;
esac
