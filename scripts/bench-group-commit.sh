#!/usr/bin/env bash
# Group commit on a slow disk, builds side by side:
#
#   scripts/bench-group-commit.sh [DATA_DIR]
#
# For each round, each added fdatasync time ($SLOWS, microseconds, added
# to every fdatasync of the log by AIONBD_DEBUG_SLOW_FDATASYNC_US: a disk
# whose cache flush is slow, as SD cards, eMMC and SSDs without power-loss
# protection have), each writer count ($CONNS) and each build ($BINS,
# "LABEL=PATH ...", default the release build), a fresh 2-shard server
# (sync on write) takes single-point upserts from that many connections,
# each sending its next write when the last is acknowledged, for $SECONDS_EACH
# s ($RATE, e.g. "--rate 1000", makes it open loop instead). One line per
# run: points/s, p50 and p99, and points per fdatasync. Defaults: ROUNDS=2
# SLOWS="0 500 2000" CONNS="4 8 16 32" SECONDS_EACH=5; DATA_DIR (default:
# generated vectors) is what the writers upsert. Each server's data
# directory is under /tmp (load-common.sh).
# shellcheck source=scripts/load-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/load-common.sh"
data_args_without_truth "${1:-}"
ROUNDS="${ROUNDS:-2}"
SLOWS="${SLOWS:-0 500 2000}"
CONNS="${CONNS:-4 8 16 32}"
SECONDS_EACH="${SECONDS_EACH:-5}"
BINS="${BINS:-current=$SERVER_BIN}"
read -r -a RATE_ARGS <<< "${RATE:-}"
for round in $(seq "$ROUNDS"); do
    for slow in $SLOWS; do
        for conns in $CONNS; do
            for bin in $BINS; do
                label="${bin%%=*}"
                rm -rf "$WORK/data"
                SERVER_BIN="${bin#*=}" AIONBD_SHARDS=2 AIONBD_DEBUG_SLOW_FDATASYNC_US="$slow" \
                    start_server "$WORK/data" "$WORK/server.err" 30
                "$LOAD" run --url "$URL" --collection g "${ARGS[@]}" --create --workload upsert \
                    --connections "$conns" --duration "$SECONDS_EACH" ${RATE_ARGS[@]+"${RATE_ARGS[@]}"} --json "$WORK/run.json" --quiet >/dev/null
                kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
                python3 - "$WORK/run.json" "$label" "$round" "$slow" "$conns" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
syncs = r["server_metrics_delta"].get("persistence_wal_fsyncs_total", 0)
label, rnd, slow, conns = sys.argv[2:]
print(f"{label:>10} round {rnd} fdatasync +{slow:>5} us, {conns:>2} writers: {r['throughput_per_s']:8.0f} points/s, "
      f"p50 {r['latency']['p50_us'] / 1000:.2f} ms, p99 {r['latency']['p99_us'] / 1000:.2f} ms, "
      f"{r['ok'] / max(syncs, 1):.1f} points per fdatasync")
PY
            done
        done
    done
done
