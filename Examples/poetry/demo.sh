#!/usr/bin/env bash
# The poetry demo: three slow poetry servers on ephemeral ports, each with its
# own delay, and get-poetry downloading from all of them at once, plus one
# port where nothing listens. Stops the servers and leaves no process behind.
# Usage: demo.sh [BUILD_DIR]   (default .build/debug)
set -euo pipefail
bin=${1:-.build/debug}
here=$(cd "$(dirname "$0")" && pwd)
poems=$(realpath --relative-to=. "$here/poems")
work=$(mktemp -d)
pids=()

stop_servers() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()
}
trap 'stop_servers; rm -rf "$work"' EXIT

# start_server NAME ARGS...: starts poetry-server, waits for its
# "Serving ... on port N." line, and sets $port.
start_server() {
    local name=$1; shift
    "$bin/poetry-server" --port 0 "$@" >"$work/$name.log" 2>&1 &
    pids+=($!)
    port=
    for _ in $(seq 200); do
        port=$(sed -n 's/^Serving .* on port \([0-9]*\)\.$/\1/p' "$work/$name.log")
        [ -n "$port" ] && return 0
        kill -0 "${pids[-1]}" 2>/dev/null || break
        sleep 0.025
    done
    echo "poetry-server $name did not start:" >&2
    cat "$work/$name.log" >&2
    exit 1
}

start_server slow-server --delay 0.2 --num-bytes 30 "$poems/slow-server.txt"; port1=$port
start_server cafe --delay 0.25 --num-bytes 40 "$poems/cafe-at-midnight.txt"; port2=$port
start_server loopback --delay 0.15 --num-bytes 10 "$poems/loopback.txt"; port3=$port

# A port where nothing listens: one a server just had, and gave back.
start_server gone "$poems/loopback.txt"; dead=$port
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
unset 'pids[-1]'

for name in slow-server cafe loopback; do head -n 1 "$work/$name.log"; done
echo
echo "\$ get-poetry $port1 $port2 $port3 $dead"
status=0
"$bin/get-poetry" "$port1" "$port2" "$port3" "$dead" || status=$?
echo

stop_servers
echo "Server logs:"
for name in slow-server cafe loopback; do tail -n +2 "$work/$name.log"; done
if [ "$status" -ne 1 ]; then
    echo "demo: get-poetry exited $status; expected 1 (one address had no server)" >&2
    exit 1
fi
echo "demo: three poems, one failed address (get-poetry exited 1, as it should); servers stopped"
