#!/usr/bin/env bash
# Runs every test of pixfork on a fresh machine: installs what the suite
# needs when it is missing, then runs the unit and integration tests (which
# start the real binaries on loopback ports).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d ../shared/corpus ]; then
    echo "test corpus not found at ../shared/corpus (beside this checkout)" >&2
    exit 1
fi

# The crash-isolation tests need the test-only ops; they are never part of
# a release build.
cargo test --features test-ops -- --test-threads=2
