#!/usr/bin/env bash
# HTTPS against plain HTTP, side by side: wrk (2 threads, 32 connections)
# on GET /live and on single-point 384-dim PUTs (persistence off, so the
# request path is measured, not the disk), alternating plain and TLS
# servers ROUNDS times. Prints requests/s and server CPU us per request.
# Needs wrk, openssl, curl and a release build (cargo build --release).
# Usage: scripts/tls_overhead.sh [ROUNDS] [SECONDS]
set -euo pipefail
ROUNDS=${1:-2}
SECS=${2:-6}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/target/release/aionbd"
WORK=$(mktemp -d)
trap 'kill "${SP:-0}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=18471
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 2>/dev/null
python3 -c "
import random
random.seed(7)
print('{\"values\":[' + ','.join('%.6f' % random.uniform(-0.1, 0.1) for _ in range(384)) + ']}')
" > "$WORK/body.json"
cat > "$WORK/put.lua" <<LUA
local body = io.open("$WORK/body.json"):read("*a")
local threads = 0
function setup(thread) threads = threads + 1; thread:set("base", threads * 100000000) end
function init(args) n = 0 end
function request()
  n = n + 1
  return wrk.format("PUT", "/collections/t/points/" .. (base + n), {["content-type"]="application/json"}, body)
end
LUA
run() { # mode (plain|tls), load (live|put)
  local scheme=http extra=()
  if [ "$1" = tls ]; then
    scheme=https
    extra=(AIONBD_TLS_ENABLED=true AIONBD_TLS_CERT_PATH="$WORK/cert.pem" AIONBD_TLS_KEY_PATH="$WORK/key.pem")
  fi
  env "${extra[@]}" AIONBD_SHARDS=2 AIONBD_PERSISTENCE_ENABLED=false AIONBD_BIND=127.0.0.1:$PORT \
    AIONBD_DATA_DIR="$WORK/data" "$BIN" > "$WORK/server.log" 2>&1 &
  SP=$!
  for _ in $(seq 100); do curl -skf "$scheme://127.0.0.1:$PORT/ready" > /dev/null && break; sleep 0.1; done
  curl -skf -X POST "$scheme://127.0.0.1:$PORT/collections" -H 'content-type: application/json' \
    -d '{"name":"t","dimension":384}' > /dev/null
  local t0 t1 out rps
  t0=$(awk '{print $14+$15}' /proc/$SP/stat)
  if [ "$2" = live ]; then
    out=$(wrk -t2 -c32 -d"${SECS}s" "$scheme://127.0.0.1:$PORT/live")
  else
    out=$(wrk -t2 -c32 -d"${SECS}s" -s "$WORK/put.lua" "$scheme://127.0.0.1:$PORT")
  fi
  t1=$(awk '{print $14+$15}' /proc/$SP/stat)
  rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
  echo "| $1 | $2 | $rps | $(python3 -c "print(round(($t1-$t0)*1e6/$(getconf CLK_TCK)/($rps*$SECS),1))") |"
  kill "$SP"; wait "$SP" 2>/dev/null || true
}
echo "| server | load | requests/s | server CPU us/request |"
echo "|---|---|---|---|"
for _ in $(seq "$ROUNDS"); do
  for load in live put; do
    run plain $load
    run tls $load
  done
done
