# shellcheck shell=bash
# Shared by scripts/load-*.sh (sourced, not run): the binaries, a server to
# load (the URL given, or a release server started here on a temp data
# directory and stopped at exit), and the data (a directory with base.fvecs
# [queries.fvecs, gt.ivecs], or generated vectors).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# In a release tarball the binaries sit beside scripts/; in the repository,
# under target/release.
if [ -x "$ROOT/aionbd-load" ] && [ -x "$ROOT/aionbd" ]; then
    LOAD="${AIONBD_LOAD_BIN:-$ROOT/aionbd-load}"
    SERVER_BIN="${AIONBD_BIN:-$ROOT/aionbd}"
else
    LOAD="${AIONBD_LOAD_BIN:-$ROOT/target/release/aionbd-load}"
    SERVER_BIN="${AIONBD_BIN:-$ROOT/target/release/aionbd}"
fi
if [ ! -x "$LOAD" ] || [ ! -x "$SERVER_BIN" ]; then
    echo "building the release binaries (cargo build --release --workspace)" >&2
    (cd "$ROOT" && cargo build --release --workspace >&2)
fi
WORK="$(mktemp -d /tmp/aionbd-load.XXXXXX)"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# use_server URL|"": sets URL; starts a local server when URL is empty.
use_server() {
    if [ -n "${1:-}" ]; then
        URL="$1"
        echo "server: $URL (given)"
        return
    fi
    start_server "$WORK/data" "$WORK/server.err" 30
    echo "server: started $("$SERVER_BIN" --version) at $URL (data in $WORK/data; stopped at exit)"
}

# start_server DATA_DIR LOG SECONDS: start the release server on DATA_DIR
# (stderr to LOG; stopped at exit), wait up to SECONDS until it listens,
# and set URL.
start_server() {
    "$SERVER_BIN" --bind 127.0.0.1:0 --data-dir "$1" >"$WORK/server.out" 2>"$2" &
    SERVER_PID=$!
    for _ in $(seq $(( $3 * 10 ))); do
        if grep -q "listening on" "$WORK/server.out" 2>/dev/null; then break; fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    grep -q "listening on" "$WORK/server.out" || { tail -20 "$2" >&2; echo "the server did not start" >&2; exit 1; }
    # Read once the line is there (read before, it could still be missing).
    URL=$(grep "listening on" "$WORK/server.out" | grep -o 'http://[0-9.:]*' | tail -1)
}

# data_args DIR|"": the aionbd-load options for the data set.
data_args() {
    local dir="${1:-}"
    if [ -z "$dir" ]; then
        DATA_ARGS=(--generate "${GENERATE:-20000}" --dim "${DIM:-128}")
        echo "data: ${GENERATE:-20000} generated clustered vectors of ${DIM:-128} dimensions (seed 1)"
        return
    fi
    [ -f "$dir/base.fvecs" ] || { echo "$dir has no base.fvecs" >&2; exit 2; }
    DATA_ARGS=(--data "$dir/base.fvecs")
    [ -f "$dir/queries.fvecs" ] && DATA_ARGS+=(--queries "$dir/queries.fvecs")
    [ -f "$dir/gt.ivecs" ] && DATA_ARGS+=(--ground-truth "$dir/gt.ivecs")
    echo "data: $dir (${DATA_ARGS[*]})"
}

# data_args_without_truth DIR|"": data_args, then ARGS: the same options
# without --ground-truth (for runs whose writes change the true neighbours).
data_args_without_truth() {
    data_args "$@"
    ARGS=()
    local skip=0 a
    for a in "${DATA_ARGS[@]}"; do
        if [ "$skip" = 1 ]; then skip=0; continue; fi
        if [ "$a" = --ground-truth ]; then skip=1; continue; fi
        ARGS+=("$a")
    done
}

# preload_and_wait: upsert every data vector into the collection COMMON
# names (creating it), then wait until no index build runs.
preload_and_wait() {
    "$LOAD" run "${COMMON[@]}" --create --preload --wait-index --duration 1 --quiet >/dev/null
}

# field FILE JSONPATH: one value of a JSON report (python3, standard library).
field() {
    python3 -c 'import json,sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    v = v.get(k) if isinstance(v, dict) else None
print("" if v is None else (round(v, 3) if isinstance(v, float) else v))' "$1" "$2"
}
ms() { python3 -c "print(round(${1:-0} / 1000, 3))"; }
