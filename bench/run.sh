#!/usr/bin/env bash
# The benchmark: installs the load tool (wrk), the decode-floor reference
# (djpeg, from libjpeg-turbo) and the peers (sharp, FastAPI + Pillow) when
# missing, builds the release binaries and
# the bench helpers once, then runs bench/run.py, which prints the table and
# writes it to bench/RESULTS.md (and bench/EDGE.md). Loopback only, bounded
# in time (about twenty-five minutes with the defaults). Extra arguments go to run.py (--seconds N ...).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d ../shared/corpus ]; then
    echo "bench corpus not found at ../shared/corpus (beside this checkout)" >&2
    exit 1
fi
source scripts/need.sh
need wrk wrk djpeg libjpeg-turbo-progs nasm nasm openssl openssl node nodejs npm npm
# The peers measured in the same run (bench/peers.py): sharp from npm, the
# FastAPI + Pillow design from PyPI (numpy for the SSIM check), pinned.
if [ ! -d bench/peers/node_modules/sharp ]; then
    (cd bench/peers && npm ci --no-audit --no-fund)
fi
python3 -c 'import fastapi, uvicorn, PIL, numpy' 2>/dev/null ||
    python3 -m pip install -q --disable-pip-version-check \
        fastapi==0.165.0 uvicorn==0.55.0 pillow==13.0.0 numpy==2.4.6

cargo build --release --bins --example inproc --example probe
exec python3 bench/run.py "$@"
