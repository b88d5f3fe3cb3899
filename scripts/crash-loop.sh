#!/usr/bin/env bash
# Real-process crash loop: 4 writers PUT points and record what the server
# acknowledged while the release server is SIGKILLed at random moments and
# restarted on the same data directory; after every restart each
# acknowledged point must be back with its exact values, and the data
# directory must stay within the bound docs/storage.md states. Backups and
# NDJSON exports are taken during every round: each that completes must hold
# every write acknowledged before it began, verify whole, and (every 10th
# round) restore into a server that serves it. Prints the
# start-up time and directory size every 100 rounds.
# Usage: scripts/crash-loop.sh [ITERATIONS]   (default 1000; the test suite runs 30)
set -euo pipefail
cd "$(dirname "$0")/.."
AIONBD_CRASH_ITERATIONS="${1:-1000}" exec cargo test --release --test server crash_loop_keeps_every_acknowledged_write -- --nocapture
