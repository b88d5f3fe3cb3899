#!/usr/bin/env bash
# Start aionbd under a seccomp filter (deploy/check/seccomp_run.py) as an
# unprivileged user, wait for /ready, run a small workload (collection,
# 3072 points so the indexes build, every search mode, payload ops, metrics),
# reload (SIGHUP), stop (SIGTERM) and require a clean exit; then restart it
# on the same data (recovery path) and stop it again.
#   deploy/check/smoke.sh BINARY --unit deploy/systemd/aionbd.service
#   deploy/check/smoke.sh BINARY --docker-profile deploy/docker/seccomp-io_uring.json
# Loopback only; needs root, python3-seccomp and curl.
set -euo pipefail
bin=$(readlink -f "$1"); shift
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/aionbd-smoke.XXXXXX)
chmod 755 "$work"
mkdir "$work/data" && chown nobody "$work/data"
cp "$bin" "$work/aionbd" && chmod 755 "$work/aionbd"
pid=
cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run_once() {  # run_once yes|no FILTER-ARGS...: yes = run the workload first
  local workload=$1; shift
  local port; port=$(free_port)
  /usr/bin/python3 "$here/seccomp_run.py" "$@" -- "$work/aionbd" --shards 2 \
    --data-dir "$work/data" --bind "127.0.0.1:$port" \
    --set persistence.snapshot_min_wal_bytes=65536 --set persistence.snapshot_wal_percent=1 \
    >"$work/out" 2>"$work/err" &
  pid=$!
  local _
  for _ in $(seq 1 150); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/ready" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/err" >&2; echo "smoke: server exited before /ready" >&2; return 1; }
    sleep 0.1
  done
  curl -fsS -o /dev/null "http://127.0.0.1:$port/ready"
  if [ "$workload" = yes ]; then python3 "$here/workload.py" "http://127.0.0.1:$port" >/dev/null; fi
  curl -fsS "http://127.0.0.1:$port/collections/w/points/count" -H 'content-type: application/json' -d '{}' >"$work/count"
  grep -q '"count":3072' "$work/count" || { echo "smoke: unexpected count: $(cat "$work/count")" >&2; return 1; }
  kill -HUP "$pid"; sleep 0.5
  kill -TERM "$pid"
  local rc=0; wait "$pid" || rc=$?
  pid=
  grep -q "credentials reloaded" "$work/err" || { cat "$work/err" >&2; echo "smoke: no reload" >&2; return 1; }
  [ "$rc" = 0 ] || { cat "$work/err" >&2; echo "smoke: exit code $rc" >&2; return 1; }
}
run_once yes "$@"
run_once no "$@"
echo "smoke: ok under $* (workload, reload, stop, recovery)"
