#!/usr/bin/env bash
# Run the client SDK suites (clients/python, clients/js) and the OpenAPI
# checks against a server binary.
#
#   AIONBD_BIN=path/to/aionbd scripts/test-clients.sh   # default: <repo>/target/release/aionbd
#
# Needs python3 (>= 3.9) with pip, node (>= 18) with npm, and network to PyPI
# and npm. Python packages go into clients/python/.venv (kept between runs),
# node packages into clients/js/node_modules. Each suite starts its own
# servers on free ports with temporary data directories. Exits non-zero if
# any step fails.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${AIONBD_BIN:-$ROOT/target/release/aionbd}"
case "$BIN" in /*) ;; *) BIN="$PWD/$BIN" ;; esac # relative to where it is run
if [ ! -x "$BIN" ]; then
    echo "test-clients: server binary $BIN not found (build it, or set AIONBD_BIN)" >&2
    exit 2
fi
export AIONBD_BIN="$BIN"

failed=()
step() { # step NAME COMMAND...: run, time, remember failures
    local name="$1" t0=$SECONDS
    shift
    echo "==> $name"
    if "$@"; then
        echo "==> $name: ok ($((SECONDS - t0)) s)"
    else
        echo "==> $name: FAILED ($((SECONDS - t0)) s)" >&2
        failed+=("$name")
    fi
}

PY="$ROOT/clients/python"
VENV="$PY/.venv"

python_setup() {
    if [ ! -x "$VENV/bin/python" ]; then
        # Debian's python3 may lack ensurepip (package python3-venv): then make
        # the venv without pip and install into it with the system pip.
        python3 -m venv "$VENV" 2>/dev/null || { rm -rf "$VENV" && python3 -m venv --without-pip "$VENV"; } || return
    fi
    if "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$PY[test]"
    else
        python3 -m pip --python "$VENV/bin/python" install --quiet --disable-pip-version-check -e "$PY[test]"
    fi
}

python_types() { (cd "$PY" && "$VENV/bin/python" -m mypy src tests); }
python_tests() { (cd "$PY" && "$VENV/bin/python" -m pytest -q -p no:cacheprovider); }

JS="$ROOT/clients/js"
js_setup() { (cd "$JS" && npm ci --no-audit --no-fund --loglevel=error); }
js_tests() { (cd "$JS" && npm test --silent); }

start=$SECONDS
step "python: install (venv $VENV)" python_setup
if [[ " ${failed[*]-} " != *"python: install"* ]]; then
    step "python: mypy --strict" python_types
    step "python: pytest" python_tests
fi
step "js: npm ci" js_setup
if [[ " ${failed[*]-} " != *"js: npm ci"* ]]; then
    step "js: build and node --test" js_tests
fi

echo "test-clients: $((SECONDS - start)) s"
if [ ${#failed[@]} -gt 0 ]; then
    printf 'test-clients: FAILED: %s\n' "${failed[@]}" >&2
    exit 1
fi
echo "test-clients: all passed"
