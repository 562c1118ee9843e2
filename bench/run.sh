#!/usr/bin/env bash
# The benchmark: installs the load tool (wrk) and the decode-floor reference
# (djpeg, from libjpeg-turbo) when missing, builds the release binaries and
# the bench helpers once, then runs bench/run.py, which prints the table and
# writes it to bench/RESULTS.md. Loopback only, bounded in time (about ten
# minutes with the defaults). Extra arguments go to run.py (--seconds N ...).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d ../shared/corpus ]; then
    echo "bench corpus not found at ../shared/corpus (beside this checkout)" >&2
    exit 1
fi
source scripts/need.sh
need wrk wrk djpeg libjpeg-turbo-progs nasm nasm openssl openssl

cargo build --release --bins --example inproc --example probe
exec python3 bench/run.py "$@"
