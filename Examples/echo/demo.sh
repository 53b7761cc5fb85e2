#!/usr/bin/env bash
# Runs the echo server on an ephemeral port, and the echo client against it.
# Both must exit 0. Usage: demo.sh BUILD_DIR
set -euo pipefail
bin=${1:-.build/debug}
out=$(mktemp)
trap 'kill "$server" 2>/dev/null || true; rm -f "$out"' EXIT
"$bin/echo-server" --once >"$out" 2>&1 &
server=$!
for _ in $(seq 100); do grep -q 'listening on port' "$out" && break; sleep 0.05; done
port=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$out")
[ -n "$port" ] || { echo "echo-server did not start:"; cat "$out"; exit 1; }
cat "$out"
"$bin/echo-client" "$port" --message "Hello, Swisted!"
wait "$server"
cat "$out" | tail -n +2
echo "demo: both sides exited 0"
