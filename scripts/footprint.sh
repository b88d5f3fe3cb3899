#!/usr/bin/env bash
# Measure the server's footprint on this machine and print a Markdown table
# plus one summary line starting with "footprint:".
#
# Usage: scripts/footprint.sh [DATA_DIR_WITH_BASE_FVECS] [POINTS]
#        scripts/footprint.sh POINTS            (generated data)
#
#   DATA_DIR_WITH_BASE_FVECS  a directory holding base.fvecs (e.g.
#       /work/shared/data/debian-minilm, 50,000 x 384): imported as often as
#       needed (ids offset with --id-start) to reach POINTS. Without it, a
#       random clustered float32 .npy of POINTS x 384 is generated (python3
#       standard library; numpy if importable).
#   POINTS  points loaded for the "with indexes" and restart rows
#       (default 200000).
#
# Measures: stripped / unstripped binary size (strip -o of a copy); idle RSS (median of 3); exec
# -> /ready 200 on an empty data directory (median of 5); RSS with POINTS
# points once every partition's IVF and HNSW index is built; stop time, data
# directory size and exec -> /ready 200 on the first restart over that data
# (plus 2 more restarts for the steady state).
#
# Environment:
#   AIONBD_BIN                binary to measure (default: the dist build,
#                             target/dist/aionbd or target/dist/dist/aionbd as
#                             scripts/release.sh leaves it, if present, else
#                             target/release/aionbd); a private copy is run
#   FOOTPRINT_IMPORT_BIN      importer if the measured binary has no `import`
#                             (default target/release/aionbd)
#   FOOTPRINT_SERVER_ARGS     extra server arguments for every run, e.g.
#                             "--set server.io_memory_bytes=1048576"
#   FOOTPRINT_COMPARE_ARGS    if the binary knows server.io_memory_bytes: the
#                             settings of the extra "compare" idle-RSS rows
#                             (default "--set server.io_memory_bytes=1048576
#                             --set server.ring_depth=64")
#   FOOTPRINT_RSS_RUNS=3 FOOTPRINT_READY_RUNS=5 FOOTPRINT_RESTART_RUNS=3
#   FOOTPRINT_START_TIMEOUT=30   seconds to /ready on an empty data dir
#   FOOTPRINT_RESTART_TIMEOUT=600 seconds to /ready over loaded data
#   FOOTPRINT_IMPORT_TIMEOUT=1800 seconds per import run
#   FOOTPRINT_INDEX_TIMEOUT=1200  seconds to wait for every index to be built
#   FOOTPRINT_STOP_TIMEOUT=120    seconds for a SIGTERM stop
#   FOOTPRINT_KEEP_TMP=1          keep the temporary directory
#
# Runs servers on 127.0.0.1 with free ephemeral ports; everything it starts
# is stopped and its temporary directory removed on exit. No cargo, no git.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
T_START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

say() { printf '[footprint %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2 || true; }
die() { say "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- arguments
DATA_SRC=${1:-}
POINTS=${2:-}
if [[ -n $DATA_SRC && -z $POINTS && $DATA_SRC =~ ^[0-9]+$ && ! -d $DATA_SRC ]]; then
    POINTS=$DATA_SRC
    DATA_SRC=
fi
POINTS=${POINTS:-200000}
[[ $POINTS =~ ^[0-9]+$ && $POINTS -gt 0 ]] || die "POINTS must be a positive integer (got '$POINTS')"
if [[ -n $DATA_SRC ]]; then
    [[ -f $DATA_SRC/base.fvecs ]] || die "$DATA_SRC/base.fvecs not found"
fi

RSS_RUNS=${FOOTPRINT_RSS_RUNS:-3}
READY_RUNS=${FOOTPRINT_READY_RUNS:-5}
START_TIMEOUT=${FOOTPRINT_START_TIMEOUT:-30}
RESTART_TIMEOUT=${FOOTPRINT_RESTART_TIMEOUT:-600}
RESTART_RUNS=${FOOTPRINT_RESTART_RUNS:-3}
IMPORT_TIMEOUT=${FOOTPRINT_IMPORT_TIMEOUT:-1800}
INDEX_TIMEOUT=${FOOTPRINT_INDEX_TIMEOUT:-1200}
STOP_TIMEOUT=${FOOTPRINT_STOP_TIMEOUT:-120}
read -r -a EXTRA <<<"${FOOTPRINT_SERVER_ARGS:-}"
read -r -a COMPARE <<<"${FOOTPRINT_COMPARE_ARGS:---set server.io_memory_bytes=1048576 --set server.ring_depth=64}"

command -v python3 >/dev/null || die "python3 is required"
command -v curl >/dev/null || die "curl is required"

# ------------------------------------------------------------------- binary
# scripts/release.sh builds with --profile dist --target-dir target/dist, so
# its binary is target/dist/dist/aionbd; target/dist/aionbd is also looked at.
if [[ -n ${AIONBD_BIN:-} ]]; then
    BIN=$AIONBD_BIN
    BIN_WHY="\$AIONBD_BIN"
elif [[ -x $ROOT/target/dist/aionbd ]]; then
    BIN=$ROOT/target/dist/aionbd
    BIN_WHY="dist profile"
elif [[ -x $ROOT/target/dist/dist/aionbd ]]; then
    BIN=$ROOT/target/dist/dist/aionbd
    BIN_WHY="dist profile (scripts/release.sh)"
else
    BIN=$ROOT/target/release/aionbd
    BIN_WHY="release profile (no dist build)"
fi
unset AIONBD_BIN   # the server warns about unknown AIONBD_* variables
[[ -x $BIN ]] || die "binary $BIN not found or not executable (set AIONBD_BIN)"
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
BIN_SHORT=${BIN#"$ROOT"/}
BIN_MTIME=$(date -u -r "$BIN" '+%Y-%m-%d %H:%M UTC')
if [[ $BIN != "$ROOT/target/release/aionbd" && -x $ROOT/target/release/aionbd && $ROOT/target/release/aionbd -nt $BIN ]]; then
    STALE_NOTE=" — older than target/release/aionbd ($(date -u -r "$ROOT/target/release/aionbd" '+%Y-%m-%d %H:%M UTC')): may not hold the latest code"
else
    STALE_NOTE=
fi

# ---------------------------------------------------------- temp + cleanup
TMP=$(mktemp -d /tmp/footprint.XXXXXX)
PIDS=$TMP/pids
: >"$PIDS"

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    trap '' PIPE
    set +e
    if [[ -s $PIDS ]]; then
        while read -r pid; do
            [[ -n $pid && -r /proc/$pid/cmdline ]] || continue
            tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$TMP" || continue
            grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null && continue
            say "cleanup: stopping server pid $pid"
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 100); do
                [[ -d /proc/$pid ]] || break
                grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null && break
                sleep 0.1
            done
            if [[ -d /proc/$pid ]] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
                kill -KILL "$pid" 2>/dev/null || true
            fi
        done <"$PIDS"
    fi
    if [[ ${FOOTPRINT_KEEP_TMP:-0} == 1 ]]; then
        say "temporary files kept in $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Run a private copy: a build that replaces the binary mid-run cannot mix
# two versions into one table.
cp "$BIN" "$TMP/aionbd"
RUN_BIN=$TMP/aionbd

# ------------------------------------------------------------ python helper
cat >"$TMP/fp.py" <<'PY'
import http.client, json, os, random, signal, socket, struct, subprocess, sys, time

def log(msg):
    try:
        sys.stderr.write("[footprint %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
        sys.stderr.flush()
    except OSError:
        pass

def on_signal(signum, frame):
    raise SystemExit(128 + signum)
signal.signal(signal.SIGTERM, on_signal)

def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port

def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False

def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "VmLck", "VmPin", "RssAnon", "RssFile", "Threads"):
                out[k] = int(v.split()[0])
    return out

def get(port, path, timeout=5.0):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()

def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""

def stop(pid, timeout):
    t0 = time.perf_counter()
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return 0.0
    while alive(pid):
        if time.perf_counter() - t0 > timeout:
            log("server pid %d did not stop within %ss after SIGTERM: SIGKILL" % (pid, timeout))
            os.kill(pid, signal.SIGKILL)
            return -1.0
        time.sleep(0.005)
    return (time.perf_counter() - t0) * 1e3

def cmd_run(argv):
    # run BIN DATADIR LOGDIR PIDFILE TIMEOUT SETTLE KEEP STOP_TIMEOUT -- ARGS...
    bin_, data, logdir, pidfile, timeout, settle, keep, stop_timeout = argv[:8]
    args = argv[9:] if len(argv) > 8 and argv[8] == "--" else argv[8:]
    timeout, settle, stop_timeout, keep = float(timeout), float(settle), float(stop_timeout), keep == "1"
    os.makedirs(logdir, exist_ok=True)
    port = free_port()
    out = open(os.path.join(logdir, "stdout"), "wb")
    err = open(os.path.join(logdir, "stderr"), "wb")
    cmd = [bin_, "--bind", "127.0.0.1:%d" % port, "--data-dir", data] + args
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    with open(pidfile, "a") as f:
        f.write("%d\n" % p.pid)
    live_ms = None
    ready_ms = None
    polls = 0
    ok = False
    try:
        while True:
            now = time.perf_counter()
            if p.poll() is not None:
                log("server exited with status %s before /ready (after %.1f ms): %s"
                    % (p.returncode, (now - t0) * 1e3, " ".join(cmd)))
                sys.stderr.write(tail(os.path.join(logdir, "stderr")) + tail(os.path.join(logdir, "stdout")))
                sys.exit(2)
            if now - t0 > timeout:
                log("server not ready within %ss: %s" % (timeout, " ".join(cmd)))
                sys.stderr.write(tail(os.path.join(logdir, "stderr")) + tail(os.path.join(logdir, "stdout")))
                sys.exit(3)
            polls += 1
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)
                c.request("GET", "/ready")
                status = c.getresponse().status
                c.close()
                t = time.perf_counter()
                if live_ms is None:
                    live_ms = (t - t0) * 1e3
                if status == 200:
                    ready_ms = (t - t0) * 1e3
                    break
            except (ConnectionError, OSError, http.client.HTTPException):
                pass
            time.sleep(0.0005)
        if settle > 0:
            time.sleep(settle)
        st = proc_status(p.pid)
        res = {
            "R_PID": p.pid, "R_PORT": port, "R_READY_MS": "%.2f" % ready_ms,
            "R_LIVE_MS": "%.2f" % live_ms, "R_POLLS": polls,
            "R_RSS_KB": st.get("VmRSS", 0), "R_HWM_KB": st.get("VmHWM", 0),
            "R_LCK_KB": st.get("VmLck", 0), "R_PIN_KB": st.get("VmPin", 0),
            "R_ANON_KB": st.get("RssAnon", 0), "R_FILE_KB": st.get("RssFile", 0),
            "R_THREADS": st.get("Threads", 0),
        }
        if not keep:
            res["R_STOP_MS"] = "%.1f" % stop(p.pid, stop_timeout)
        print(" ".join("%s=%s" % kv for kv in res.items()))
        ok = True
    finally:
        if (not keep or not ok) and p.poll() is None:
            stop(p.pid, stop_timeout)

def cmd_stop(argv):
    print("%.1f" % stop(int(argv[0]), float(argv[1])))

def cmd_status(argv):
    st = proc_status(int(argv[0]))
    print("R_RSS_KB=%d R_HWM_KB=%d R_LCK_KB=%d R_PIN_KB=%d R_ANON_KB=%d R_FILE_KB=%d R_THREADS=%d" % (
        st.get("VmRSS", 0), st.get("VmHWM", 0), st.get("VmLck", 0), st.get("VmPin", 0),
        st.get("RssAnon", 0), st.get("RssFile", 0), st.get("Threads", 0)))

def summarize(info):
    parts = info.get("index", {}).get("partitions", [])
    rows = []
    for p in parts:
        h = p.get("hnsw")
        rows.append((p.get("kind"), p.get("building"), p.get("indexed_points", 0), p.get("exact_points", 0),
                     p.get("build_ms"), None if h is None else (h.get("building"), h.get("nodes", 0),
                     h.get("exact_points", 0), h.get("tombstones", 0), h.get("build_ms"))))
    return rows

MIN_POINTS = 2048  # a partition gets its IVF (then HNSW) index from this size on

def all_built(info):
    """Every partition's IVF and HNSW index built with no point pending.

    A partition below MIN_POINTS never gets an index (kind "none"); such
    partitions are accepted only when the points outside the indexed
    partitions are too few for each of them to reach MIN_POINTS (a partition
    that reaches it reports an IVF build within ~200 ms, and the caller also
    wants the state stable over two polls)."""
    parts = info.get("index", {}).get("partitions", [])
    if not parts:
        return False
    indexed, unindexed = 0, 0
    for p in parts:
        if p.get("kind") == "none" and "error" not in p:
            unindexed += 1
            continue
        h = p.get("hnsw")
        if p.get("kind") != "ivf" or p.get("building") or p.get("exact_points", 1) != 0:
            return False
        if h is None or h.get("building") or h.get("exact_points", 1) != 0:
            return False
        indexed += p.get("indexed_points", 0)
    rest = info.get("point_count", -1) - indexed
    if unindexed == 0:
        return rest == 0
    return 0 <= rest < MIN_POINTS * unindexed

def describe(info):
    out = []
    for i, p in enumerate(info.get("index", {}).get("partitions", [])):
        h = p.get("hnsw")
        s = "p%d ivf:%s idx=%s exact=%s" % (i, "building" if p.get("building") else p.get("kind"),
                                            p.get("indexed_points"), p.get("exact_points"))
        if h is None:
            s += " hnsw:none"
        else:
            s += " hnsw:%s nodes=%s pending=%s" % ("building" if h.get("building") else "built",
                                                  h.get("nodes"), h.get("exact_points"))
        out.append(s)
    return "; ".join(out)

def cmd_wait_index(argv):
    port, name, expected, timeout = int(argv[0]), argv[1], int(argv[2]), float(argv[3])
    t0 = time.perf_counter()
    last_log = -1e9
    prev = None
    stable = 0
    while True:
        el = time.perf_counter() - t0
        try:
            status, body = get(port, "/collections/" + name, timeout=30)
            info = json.loads(body) if status == 200 else {}
        except (OSError, ValueError, http.client.HTTPException) as e:
            status, info = str(e), {}
        if status == 200 and info.get("point_count") == expected and all_built(info):
            key = summarize(info)
            stable = stable + 1 if key == prev else 1
            prev = key
            if stable >= 2:
                parts = info["index"]["partitions"]
                print("W_SECS=%.1f W_PARTS=%d W_NOINDEX=%d W_IVF_BYTES=%d W_HNSW_BYTES=%d" % (
                    el, len(parts), sum(1 for p in parts if p.get("kind") == "none"),
                    sum(p.get("bytes", 0) for p in parts),
                    sum((p.get("hnsw") or {}).get("bytes", 0) for p in parts)))
                log("indexes built and stable after %.1f s: %s" % (el, describe(info)))
                return
        else:
            stable, prev = 0, None
        if el - last_log >= 15:
            log("waiting for indexes (%.0f s): status %s, points %s/%d; %s"
                % (el, status, info.get("point_count"), expected, describe(info)))
            last_log = el
        if el > timeout:
            log("indexes not all built within %ss: %s" % (timeout, describe(info)))
            sys.exit(4)
        time.sleep(2)

def cmd_index_state(argv):
    port, name = int(argv[0]), argv[1]
    status, body = get(port, "/collections/" + name, timeout=30)
    info = json.loads(body)
    parts = info.get("index", {}).get("partitions", [])
    ivf = sum(1 for p in parts if p.get("kind") == "ivf" and not p.get("building"))
    hnsw = sum(1 for p in parts if p.get("hnsw") and not p["hnsw"].get("building"))
    print("I_POINTS=%d I_PARTS=%d I_IVF=%d I_HNSW=%d" % (info.get("point_count", 0), len(parts), ivf, hnsw))

def cmd_metric(argv):
    port, key = int(argv[0]), argv[1]
    status, body = get(port, "/metrics")
    print(int(json.loads(body).get(key, 0)))

def cmd_gen_npy(argv):
    path, n, dim, seed = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    clusters = max(16, min(1024, n // 500))
    try:
        import numpy as np
        rng = np.random.default_rng(seed)
        cent = rng.standard_normal((clusters, dim), dtype=np.float32)
        with open(path, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (n, dim)})
            step = 65536
            for s in range(0, n, step):
                m = min(step, n - s)
                x = cent[rng.integers(0, clusters, m)] + 0.35 * rng.standard_normal((m, dim), dtype=np.float32)
                f.write(x.astype("<f4").tobytes())
        log("generated %s with numpy (%d x %d, %d clusters)" % (path, n, dim, clusters))
        return
    except ImportError:
        pass
    from array import array
    rnd = random.Random(seed)
    g = rnd.gauss
    cent = [[g(0.0, 1.0) for _ in range(dim)] for _ in range(clusters)]
    pool_len = 1 << 17
    pool = [g(0.0, 0.35) for _ in range(pool_len + dim)]
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (n, dim)
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * (pad % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1"))
        buf = array("f")
        ri = rnd.randrange
        for i in range(n):
            c = cent[ri(clusters)]
            o = ri(pool_len)
            buf.extend([a + b for a, b in zip(c, pool[o:o + dim])])
            if len(buf) >= 1 << 20:
                if sys.byteorder != "little":
                    buf.byteswap()
                f.write(buf.tobytes())
                buf = array("f")
        if sys.byteorder != "little":
            buf.byteswap()
        f.write(buf.tobytes())
    log("generated %s with the standard library (%d x %d, %d clusters; noise windows of a "
        "shared Gaussian pool)" % (path, n, dim, clusters))

def cmd_median(argv):
    v = sorted(float(x) for x in argv)
    m = len(v) // 2
    print(v[m] if len(v) % 2 else (v[m - 1] + v[m]) / 2)

def cmd_calc(argv):
    # safe arithmetic on numbers only: calc FORMAT EXPR
    fmt, expr = argv[0], argv[1]
    if any(ch not in "0123456789.+-*/() e<>=" for ch in expr):
        raise SystemExit("bad expression")
    print(fmt % eval(expr, {"__builtins__": {}}, {}))

cmds = {"run": cmd_run, "stop": cmd_stop, "status": cmd_status, "wait-index": cmd_wait_index,
        "index-state": cmd_index_state, "metric": cmd_metric, "gen-npy": cmd_gen_npy,
        "median": cmd_median, "calc": cmd_calc}
if __name__ == "__main__":
    try:
        cmds[sys.argv[1]](sys.argv[2:])
    except KeyboardInterrupt:
        sys.exit(130)
PY
fp() { python3 "$TMP/fp.py" "$@"; }
calc() { fp calc "$1" "$2"; }
median() { fp median "$@"; }

RUN_N=0
# start_server DATA_DIR TIMEOUT SETTLE KEEP [ARGS...]: sets R_* variables.
start_server() {
    local data=$1 timeout=$2 settle=$3 keep=$4 out
    shift 4
    RUN_N=$((RUN_N + 1))
    out=$(fp run "$RUN_BIN" "$data" "$TMP/log-$RUN_N" "$PIDS" "$timeout" "$settle" "$keep" "$STOP_TIMEOUT" -- "$@") || return 1
    [[ $out =~ ^[A-Z_=0-9.\ -]+$ ]] || { say "unexpected helper output: $out"; return 1; }
    eval "$out"
}

# ----------------------------------------------------------------- the rows
ROWS=()
row() { ROWS+=("| $1 | $2 | $3 | $4 |"); }
mark() { # mark VALUE GOAL -> "met"/"missed"
    if [[ $(calc '%d' "($1) <= ($2)") == 1 ]]; then echo "met"; else echo "missed"; fi
}
mib() { calc '%.2f' "$1 / 1048576"; }

say "binary: $BIN ($BIN_WHY, built $BIN_MTIME)${STALE_NOTE}"
CONFIG_EXTRA=$("$RUN_BIN" "${EXTRA[@]}" --print-config 2>/dev/null) || die "$BIN --print-config failed"
HAS_IO_MEM=0
if grep -q 'io_memory_bytes' <<<"$CONFIG_EXTRA"; then HAS_IO_MEM=1; fi
IO_SETTINGS=$(grep -E '^(io_memory_bytes|ring_depth|shards|spin_before_park_us) ' <<<"$CONFIG_EXTRA" | tr -s ' ' | paste -sd, - | sed 's/,/, /g')
say "effective settings: ${IO_SETTINGS:-?}; extra server args: ${FOOTPRINT_SERVER_ARGS:-none}"
[[ $HAS_IO_MEM == 1 ]] || say "binary has no server.io_memory_bytes setting: skipping the compare rows"

# 1. binary size
say "1/5 binary size (strip -o)"
STRIPPED=$TMP/aionbd.stripped
SIZE_FULL=$(stat -c %s "$RUN_BIN")
SIZE_FULL_MIB=$(mib "$SIZE_FULL")
if command -v strip >/dev/null && strip -o "$STRIPPED" "$RUN_BIN" 2>/dev/null; then
    STRIP_HOW="strip -o"
elif command -v objcopy >/dev/null && objcopy --strip-all "$RUN_BIN" "$STRIPPED" 2>/dev/null; then
    STRIP_HOW="objcopy --strip-all"
else
    STRIP_HOW=
fi
if [[ -n $STRIP_HOW ]]; then
    SIZE_STRIP=$(stat -c %s "$STRIPPED")
    SIZE_STRIP_MIB=$(mib "$SIZE_STRIP")
    BIN_MARK=$(mark "$SIZE_STRIP" "8*1048576")
    SUM_BIN="$SIZE_STRIP_MIB MiB"
    row "Binary size (stripped)" "$SIZE_STRIP_MIB MiB ($SIZE_STRIP B)" "≤ 8 MiB: $BIN_MARK" \
        "\`$STRIP_HOW\` copy of \`$BIN_SHORT\`; unstripped file $SIZE_FULL_MIB MiB ($SIZE_FULL B)"
    say "stripped $SIZE_STRIP_MIB MiB, unstripped $SIZE_FULL_MIB MiB"
else
    say "warning: neither strip nor objcopy could strip $BIN"
    SUM_BIN=n/a BIN_MARK="not measured"
    row "Binary size (stripped)" "n/a (strip failed)" "≤ 8 MiB" "unstripped file $SIZE_FULL_MIB MiB ($SIZE_FULL B)"
fi

# 2. idle RSS
idle_rss() { # idle_rss LABEL ARGS... -> sets IDLE_RSS IDLE_HWM IDLE_PIN IDLE_ANON IDLE_FILE IDLE_THREADS (KiB medians)
    local label=$1 i rss=() hwm=() pin=() anon=() file=() thr=()
    shift
    for i in $(seq 1 "$RSS_RUNS"); do
        start_server "$TMP/idle-$label-$i" "$START_TIMEOUT" 1 0 "$@" || return 1
        say "  $label run $i: VmRSS ${R_RSS_KB} KiB (anon ${R_ANON_KB}, file ${R_FILE_KB}), VmHWM ${R_HWM_KB} KiB, VmPin ${R_PIN_KB} KiB, VmLck ${R_LCK_KB} KiB, threads ${R_THREADS} (ready ${R_READY_MS} ms)"
        rss+=("$R_RSS_KB"); hwm+=("$R_HWM_KB"); pin+=("$R_PIN_KB"); anon+=("$R_ANON_KB"); file+=("$R_FILE_KB"); thr+=("$R_THREADS")
        rm -rf "$TMP/idle-$label-$i"
    done
    IDLE_RSS=$(median "${rss[@]}"); IDLE_HWM=$(median "${hwm[@]}")
    IDLE_PIN=$(median "${pin[@]}"); IDLE_ANON=$(median "${anon[@]}"); IDLE_FILE=$(median "${file[@]}")
    IDLE_THREADS=$(median "${thr[@]}")
}
say "2/5 idle RSS: $RSS_RUNS runs on empty data dirs, default shards, 1 s after /ready"
idle_rss default "${EXTRA[@]}" || die "server did not start (see above)"
DEF_IDLE_RSS=$IDLE_RSS
IDLE_RSS_MIB=$(calc '%.2f' "$IDLE_RSS / 1024")
IDLE_MARK=$(mark "$IDLE_RSS" "8*1024")
row "Idle RSS" "$IDLE_RSS_MIB MiB (VmHWM $(calc '%.2f' "$IDLE_HWM / 1024") MiB)" "≤ 8 MiB: $IDLE_MARK" \
    "VmRSS from /proc/PID/status 1 s after /ready 200, empty data dir, default shards ($(nproc)), median of $RSS_RUNS; RssAnon $(calc '%.2f' "$IDLE_ANON / 1024") + RssFile $(calc '%.2f' "$IDLE_FILE / 1024") MiB, VmPin $(calc '%.2f' "$IDLE_PIN / 1024") MiB (io_uring), ${IDLE_THREADS%.*} threads"

COMPARE_NOTE=
if [[ $HAS_IO_MEM == 1 ]]; then
    say "2b/5 idle RSS with compare settings: ${COMPARE[*]}"
    if idle_rss compare "${EXTRA[@]}" "${COMPARE[@]}"; then
        C_MIB=$(calc '%.2f' "$IDLE_RSS / 1024")
        DELTA=$(calc '%+.2f' "($IDLE_RSS - $DEF_IDLE_RSS) / 1024")
        row "Idle RSS, \`${COMPARE[*]}\`" "$C_MIB MiB ($DELTA MiB vs row above; VmHWM $(calc '%.2f' "$IDLE_HWM / 1024") MiB)" \
            "≤ 8 MiB: $(mark "$IDLE_RSS" "8*1024")" \
            "as above with FOOTPRINT_COMPARE_ARGS; RssAnon $(calc '%.2f' "$IDLE_ANON / 1024") + RssFile $(calc '%.2f' "$IDLE_FILE / 1024") MiB, VmPin $(calc '%.2f' "$IDLE_PIN / 1024") MiB"
        COMPARE_NOTE=" (compare settings: $C_MIB MiB)"
    else
        row "Idle RSS, \`${COMPARE[*]}\`" "server did not start" "≤ 8 MiB" "see stderr"
        COMPARE_NOTE=" (compare settings: did not start)"
    fi
fi

# 3. exec -> /ready on an empty data dir
say "3/5 exec -> /ready 200 on an empty data dir: $READY_RUNS runs (poll every 0.5 ms)"
READYS=(); LIVES=()
for i in $(seq 1 "$READY_RUNS"); do
    start_server "$TMP/ready-$i" "$START_TIMEOUT" 0 0 "${EXTRA[@]}" || die "server did not start (see above)"
    say "  run $i: ready ${R_READY_MS} ms (first answer ${R_LIVE_MS} ms, ${R_POLLS} polls, stop ${R_STOP_MS} ms)"
    READYS+=("$R_READY_MS"); LIVES+=("$R_LIVE_MS")
    rm -rf "$TMP/ready-$i"
done
READY_MED=$(calc '%.1f' "$(median "${READYS[@]}")")
LIVE_MED=$(calc '%.1f' "$(median "${LIVES[@]}")")
READY_MIN=$(printf '%s\n' "${READYS[@]}" | sort -g | head -1)
READY_MAX=$(printf '%s\n' "${READYS[@]}" | sort -g | tail -1)
READY_MARK=$(mark "$READY_MED" 20)
READY_NOISE=
if [[ $(calc '%d' "$READY_MAX > 2 * $READY_MIN") == 1 ]]; then
    READY_NOISE="; noisy: max > 2 × min (other load on the machine?)"
    say "warning: exec -> /ready times vary more than 2x ($READY_MIN .. $READY_MAX ms): the machine may be busy"
fi
row "exec → /ready 200, empty data dir" "$READY_MED ms (min $READY_MIN, max $READY_MAX)" "≤ 20 ms: $READY_MARK" \
    "python3 \`subprocess.Popen\` timer, new http.client connection per poll every 0.5 ms, median of $READY_RUNS; first HTTP answer after $LIVE_MED ms$READY_NOISE"

# 4 + 5. load data, RSS with indexes, restart
DIM=384
IMPORTS=()   # "FILE ID_START" pairs
if [[ -n $DATA_SRC ]]; then
    SRC=$DATA_SRC/base.fvecs
    DIM=$(od -An -t d4 -N 4 "$SRC" | tr -d ' ')
    ROWBYTES=$((4 + 4 * DIM))
    SRC_ROWS=$(( $(stat -c %s "$SRC") / ROWBYTES ))
    [[ $SRC_ROWS -gt 0 ]] || die "$SRC has no rows"
    [[ $DIM == 384 ]] || say "warning: $SRC has dimension $DIM, not 384"
    DATA_HOW="$SRC ($SRC_ROWS x $DIM) imported $(( (POINTS + SRC_ROWS - 1) / SRC_ROWS )) time(s) with --id-start offsets (repeats are exact duplicates)"
    start=0
    while [[ $start -lt $POINTS ]]; do
        rem=$((POINTS - start))
        if [[ $rem -ge $SRC_ROWS ]]; then
            IMPORTS+=("$SRC $start")
            start=$((start + SRC_ROWS))
        else
            head -c $((rem * ROWBYTES)) "$SRC" >"$TMP/part.fvecs"
            IMPORTS+=("$TMP/part.fvecs $start")
            start=$POINTS
        fi
    done
else
    say "4/5 generating $POINTS x $DIM random clustered float32 points"
    fp gen-npy "$TMP/gen.npy" "$POINTS" "$DIM" 42 || die "data generation failed"
    IMPORTS+=("$TMP/gen.npy 0")
    DATA_HOW="generated clustered float32 .npy ($POINTS x $DIM)"
fi

# The importer is only a client: if the measured binary has no `import`
# (an older build), another binary's importer loads the data.
IMPORT_BIN=$RUN_BIN
IMPORT_NOTE=
if ! "$RUN_BIN" import --help >/dev/null 2>&1; then
    cand=${FOOTPRINT_IMPORT_BIN:-$ROOT/target/release/aionbd}
    [[ -x $cand ]] && cp "$cand" "$TMP/aionbd-import" && "$TMP/aionbd-import" import --help >/dev/null 2>&1 ||
        die "$BIN has no import subcommand and $cand cannot import either (set FOOTPRINT_IMPORT_BIN)"
    IMPORT_BIN=$TMP/aionbd-import
    IMPORT_NOTE=" (importer: ${cand#"$ROOT"/}; the measured binary has no \`import\`)"
    say "$BIN_SHORT has no import subcommand: importing with ${cand#"$ROOT"/}"
fi

LOAD_DIR=$TMP/loaded
if [[ $POINTS -lt $((2048 * $(nproc))) ]]; then
    say "warning: $POINTS points over $(nproc) partitions: partitions under 2048 points get no index"
fi
say "4/5 loading $POINTS points: $DATA_HOW"
start_server "$LOAD_DIR" "$START_TIMEOUT" 0 1 "${EXTRA[@]}" || die "server did not start (see above)"
LPID=$R_PID; LPORT=$R_PORT
URL=http://127.0.0.1:$LPORT
COLL=footprint
T0=$(date +%s.%N)
for imp in "${IMPORTS[@]}"; do
    imp_file=${imp% *}; idstart=${imp##* }
    say "  import $imp_file --id-start $idstart"
    timeout "$IMPORT_TIMEOUT" "$IMPORT_BIN" import --url "$URL" --collection "$COLL" --create --id-start "$idstart" "$imp_file" >&2 ||
        die "import of $imp_file failed or timed out (${IMPORT_TIMEOUT}s)"
done
IMPORT_S=$(calc '%.1f' "$(date +%s.%N) - $T0")
IMPORT_RATE=$(calc '%.0f' "$POINTS / $IMPORT_S")
say "imported $POINTS points in $IMPORT_S s ($IMPORT_RATE points/s); waiting for every partition's IVF + HNSW index (timeout ${INDEX_TIMEOUT}s)"
W_OUT=$(fp wait-index "$LPORT" "$COLL" "$POINTS" "$INDEX_TIMEOUT") || die "indexes were not built in time (FOOTPRINT_INDEX_TIMEOUT=$INDEX_TIMEOUT)"
eval "$W_OUT"
NOINDEX_NOTE=
if [[ $W_NOINDEX -gt 0 ]]; then
    NOINDEX_NOTE="; $W_NOINDEX of $W_PARTS partitions under 2048 points have no index"
    say "warning: $W_NOINDEX of $W_PARTS partitions are under 2048 points and have no index"
fi
sleep 2
eval "$(fp status "$LPID")"
LOAD_RSS=$R_RSS_KB; LOAD_HWM=$R_HWM_KB
MEM_USED=$(fp metric "$LPORT" memory_used_bytes)
RAW=$((POINTS * DIM * 4))
LOAD_RSS_B=$((LOAD_RSS * 1024))
LOAD_RSS_MIB=$(calc '%.1f' "$LOAD_RSS / 1024")
PER_M_MIB=$(calc '%.0f' "$LOAD_RSS_B / $POINTS * 1000000 / 1048576")
PER_M_GIB=$(calc '%.2f' "$LOAD_RSS_B / $POINTS * 1000000 / 1073741824")
RSS_RATIO=$(calc '%.2f' "$LOAD_RSS_B / $RAW")
NET_RATIO=$(calc '%.2f' "($LOAD_RSS - $DEF_IDLE_RSS) * 1024 / $RAW")
say "RSS with indexes: $LOAD_RSS_MIB MiB (VmHWM $(calc '%.1f' "$LOAD_HWM / 1024") MiB), memory_used_bytes $(mib "$MEM_USED") MiB"
row "RSS, $POINTS × $DIM points with indexes" "$LOAD_RSS_MIB MiB (VmHWM $(calc '%.1f' "$LOAD_HWM / 1024") MiB)" "—" \
    "VmRSS 2 s after every partition's IVF and HNSW index reported built (no pending points, stable over 2 polls, $W_SECS s after import$NOINDEX_NOTE); /metrics memory_used_bytes $(mib "$MEM_USED") MiB (IVF $(mib "$W_IVF_BYTES"), HNSW $(mib "$W_HNSW_BYTES") MiB); data: $DATA_HOW, import $IMPORT_S s ($IMPORT_RATE points/s)$IMPORT_NOTE"
row "RSS per million $DIM-d points with indexes" "$PER_M_MIB MiB ($PER_M_GIB GiB)" "—" \
    "RSS above × 10⁶ / $POINTS (linear scale, idle RSS included)"
row "RSS / raw f32 size" "${RSS_RATIO}×" "—" \
    "RSS / ($POINTS × $DIM × 4 B = $(mib "$RAW") MiB); without idle RSS ${NET_RATIO}×"

say "5/5 restart: SIGTERM, then exec -> /ready 200 on the same data dir"
STOP_MS=$(fp stop "$LPID" "$STOP_TIMEOUT")
DU=$(du -sb "$LOAD_DIR" | cut -f1)
SPARE=$(find "$LOAD_DIR" -name 'wal-spare-*' -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')
NSNAP=$(find "$LOAD_DIR" -name 'snap-*.bin' -type f | wc -l)
NWAL=$(find "$LOAD_DIR" -name 'wal-[0-9]*.log' -type f | wc -l)
say "stopped in $STOP_MS ms; data dir $(calc '%.3f' "$DU / 1e9") GB ($NSNAP snapshots, $NWAL WAL segments, $(mib "$SPARE") MiB preallocated spare segments)"
# Spare WAL segments are renamed on every start: compare them by size only.
dir_list() { find "$LOAD_DIR" -type f ! -name LOCK -printf '%P %s\n' | sed 's/wal-spare-[0-9]*/wal-spare-N/' | sort; }
dir_list >"$TMP/dir-before"
# The first start after the clean stop is the measure (it may replay the
# WAL and write a snapshot); further starts show the steady state.
RESTARTS=(); RLIVES=(); RSTOPS=()
for i in $(seq 1 "$RESTART_RUNS"); do
    start_server "$LOAD_DIR" "$RESTART_TIMEOUT" 0 1 "${EXTRA[@]}" || die "restart on the loaded data dir failed (see above)"
    RPID=$R_PID; RPORT=$R_PORT
    if [[ $i == 1 ]]; then
        RESTART_RSS=$R_RSS_KB
        eval "$(fp index-state "$RPORT" "$COLL")"
        [[ $I_POINTS == "$POINTS" ]] || say "warning: after restart point_count is $I_POINTS, expected $POINTS"
    fi
    RSTOPS+=("$(fp stop "$RPID" "$STOP_TIMEOUT")")
    say "  restart $i: /ready after ${R_READY_MS} ms (first answer ${R_LIVE_MS} ms), stopped again in ${RSTOPS[-1]} ms"
    RESTARTS+=("$R_READY_MS"); RLIVES+=("$R_LIVE_MS")
    if [[ $i == 1 ]]; then
        dir_list >"$TMP/dir-after"
        if cmp -s "$TMP/dir-before" "$TMP/dir-after"; then
            DIR_NOTE="it left the data dir unchanged, spare WAL segment names aside"
        else
            DIR_NOTE="it rewrote the data dir (e.g. WAL folded into a new snapshot; now $(calc '%.3f' "$(du -sb "$LOAD_DIR" | cut -f1) / 1e9") GB)"
            say "the first restart changed the data dir (before -> after):"
            diff "$TMP/dir-before" "$TMP/dir-after" | grep '^[<>]' | sed 's/^/    /' >&2 || true
        fi
    fi
done
RESTART_S=$(calc '%.3f' "${RESTARTS[0]} / 1000")
RESTART_LIVE_MS=${RLIVES[0]}
if [[ ${#RESTARTS[@]} -gt 1 ]]; then
    LATER_MED=$(calc '%.3f' "$(median "${RESTARTS[@]:1}") / 1000")
    LATER_ALL=$(for v in "${RESTARTS[@]:1}"; do calc '%.3f' "$v / 1000"; done | paste -sd, - | sed 's/,/, /g')
    LATER_NOTE="; $(( ${#RESTARTS[@]} - 1 )) further restarts (each stopped at /ready): $LATER_ALL s, median $LATER_MED s"
else
    LATER_NOTE=
fi
DU_GB=$(calc '%.3f' "$DU / 1e9")
PER_GB=$(calc '%.2f' "$RESTART_S / ($DU / 1e9)")
LIVE_DU=$((DU - SPARE))
PER_GB_LIVE=$(calc '%.2f' "$RESTART_S / ($LIVE_DU / 1e9)")
say "restart: /ready after $RESTART_S s (first answer $(calc '%.1f' "$RESTART_LIVE_MS") ms), $PER_GB s/GB; RSS at /ready $(calc '%.1f' "$RESTART_RSS / 1024") MiB"
row "Data dir after clean stop" "$DU_GB GB ($DU B)" "—" \
    "\`du -sb\` after SIGTERM (stop took $(calc '%.0f' "$STOP_MS") ms): $NSNAP snapshot(s), $NWAL WAL segment(s), $(mib "$SPARE") MiB preallocated spare WAL segments; $(calc '%.3f' "$LIVE_DU / 1e9") GB without spares"
row "Restart, exec → /ready 200" "$RESTART_S s" "—" \
    "first start on the loaded dir after the clean stop, same poll loop ($I_POINTS points back; $DIR_NOTE); first HTTP answer (/live) after $(calc '%.1f' "$RESTART_LIVE_MS") ms; RSS at /ready $(calc '%.1f' "$RESTART_RSS / 1024") MiB; indexes built at /ready: IVF $I_IVF/$I_PARTS, HNSW $I_HNSW/$I_PARTS partitions (rebuilt in the background)$LATER_NOTE"
row "Restart time per GB of data" "$PER_GB s/GB" "—" \
    "first restart time / \`du -sb\` size after the clean stop in GB (10⁹ B); $PER_GB_LIVE s/GB without spare WAL segments"

# ------------------------------------------------------------------- output
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
MEM_TOTAL=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)
ELAPSED=$(( $(date +%s) - T_START ))
{
    echo "## AIONBD footprint"
    echo
    echo "Binary: \`$BIN_SHORT\` ($BIN_WHY, built $BIN_MTIME${STALE_NOTE}), $("$RUN_BIN" --version 2>/dev/null || echo '?'); settings: ${IO_SETTINGS:-?}; extra server args: \`${FOOTPRINT_SERVER_ARGS:-none}\`"
    echo
    echo "| Measure | Value | Goal | How |"
    echo "|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "Machine: $(nproc) CPUs, ${CPU:-unknown CPU}, $MEM_TOTAL RAM, kernel $(uname -r), $(date -u '+%Y-%m-%d %H:%M UTC'); load average $LOAD_START at start, $(cut -d' ' -f1-3 /proc/loadavg) at end; script took ${ELAPSED} s"
    echo
    echo "footprint: $BIN_SHORT stripped $SUM_BIN (≤8: $BIN_MARK), idle RSS $IDLE_RSS_MIB MiB (≤8: $IDLE_MARK)$COMPARE_NOTE, exec→ready $READY_MED ms (≤20: $READY_MARK), restart $RESTART_S s for $DU_GB GB ($PER_GB s/GB), RSS with indexes $PER_M_MIB MiB per 1M×$DIM points (${RSS_RATIO}× raw f32; $POINTS points measured)"
}
