#!/usr/bin/env bash
# Crashes under load, then a check that no acknowledged write was lost:
#
#   scripts/chaos.sh [ROUNDS] [DATA_DIR]
#
# A release server on a fixed local port and a temp data directory (a 64 MiB
# tmpfs when run as root), 1 MiB WAL segments, snapshots along the way. Each
# round (default 6) runs aionbd-load (mixed: half searches, half single-point
# upserts, open loop at 300/s, its acknowledged writes appended to a log)
# and, mid-run, in turn: SIGKILL and a restart, SIGSTOP for 2 s, or (tmpfs)
# a full disk: a filler file takes the free space for 3 s, writes answer 507
# (not acknowledged) once the WAL needs a new segment, then the space returns. At the end the server restarts
# cleanly and `aionbd-load verify` reads every acknowledged write back.
# A slow disk is not simulated (it needs a device-mapper delay target).
# shellcheck source=scripts/load-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/load-common.sh"
ROUNDS="${1:-6}"
data_args "${2:-}"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT"
DATA="$WORK/data"
mkdir -p "$DATA"
if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=64m tmpfs "$DATA" 2>/dev/null; then
    TMPFS=1
    echo "data: a 64 MiB tmpfs at $DATA (the disk will be filled)"
else
    TMPFS=0
    echo "data: $DATA (not root: no disk-full phase)"
fi
unmount() { if [ "$TMPFS" = 1 ]; then umount "$DATA" 2>/dev/null || true; fi; }
trap 'kill "$SERVER_PID" 2>/dev/null || true; kill -CONT "$SERVER_PID" 2>/dev/null || true; wait 2>/dev/null || true; unmount; rm -rf "$WORK"' EXIT
start() {
    "$SERVER_BIN" --bind "127.0.0.1:$PORT" --data-dir "$DATA" --set persistence.wal_segment_bytes=1048576 \
        --set persistence.snapshot_min_wal_bytes=1048576 >>"$WORK/server.out" 2>>"$WORK/server.err" &
    SERVER_PID=$!
    for _ in $(seq 600); do curl -sf "$URL/ready" >/dev/null 2>&1 && return; sleep 0.1; done
    tail -5 "$WORK/server.err" >&2
    echo "chaos: the server did not come back" >&2
    exit 1
}
start
echo "server: $("$SERVER_BIN" --version) at $URL"
ACK="$WORK/acked.log"
COMMON=(--url "$URL" --collection chaos "${DATA_ARGS[@]}")
"$LOAD" run "${COMMON[@]}" --create --preload --duration 0.5 --quiet >/dev/null
kills=0 stops=0 fulls=0
for round in $(seq "$ROUNDS"); do
    "$LOAD" run "${COMMON[@]}" --workload mixed --read-ratio 0.5 --rate 300 --duration 6 --timeout 3 \
        --id-start $((round * 10000000)) --acked-log "$ACK" --json "$WORK/round-$round.json" --quiet \
        >/dev/null 2>"$WORK/load-$round.err" &
    LOADER=$!
    sleep "$(python3 -c "import random; print(round(random.uniform(1.5, 4), 2))")"
    case $((round % 3)) in
        1) kill -9 "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; start; kills=$((kills + 1)); what="SIGKILL + restart" ;;
        2) kill -STOP "$SERVER_PID"; sleep 2; kill -CONT "$SERVER_PID"; stops=$((stops + 1)); what="SIGSTOP 2 s" ;;
        *)
            if [ "$TMPFS" = 1 ]; then
                dd if=/dev/zero of="$DATA/filler" bs=1M status=none 2>/dev/null || true
                sleep 3
                rm -f "$DATA/filler"
                fulls=$((fulls + 1))
                what="disk full for 3 s"
            else
                what="load only"
            fi
            ;;
    esac
    wait "$LOADER" || true
    echo "round $round: $what; answers $(python3 -c "import json; print(json.load(open('$WORK/round-$round.json'))['status'])" 2>/dev/null || echo '(no report)')"
done
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
start
acked=$(wc -l <"$ACK")
refused=$(python3 -c "
import glob, json
print(sum(json.load(open(f))['status'].get('507', 0) for f in glob.glob('$WORK/round-*.json')))")
if "$LOAD" verify "${COMMON[@]}" --acked "$ACK"; then
    echo "chaos: $ROUNDS rounds ($kills SIGKILLs, $stops SIGSTOPs, $fulls full-disk phases: $refused writes refused with 507): all $acked acknowledged writes are back"
else
    echo "chaos: FAILED: acknowledged writes are missing (log: $ACK)"
    exit 1
fi
