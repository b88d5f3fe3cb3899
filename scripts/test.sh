#!/usr/bin/env bash
# The whole test suite, as the README and CI run it: the Rust workspace
# (unit, property and integration tests; the integration tests start the
# real server on free loopback ports), then the Python and TypeScript SDK
# suites against the release binary that built (scripts/test-clients.sh:
# needs python3 with venv/pip, node >= 18 with npm, and the PyPI and npm
# registries).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --release
AIONBD_BIN="$PWD/target/release/aionbd" scripts/test-clients.sh
