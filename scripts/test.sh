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

# System tools the tests drive for real: systemd-socket-activate and
# systemd-analyze (package systemd); redis-server for the shared job store
# (tests/jobs_redis.rs starts its own); chattr (e2fsprogs) to make the job
# database refuse writes at runtime; nasm so libjpeg-turbo is built with
# its SIMD kernels, as in production (see scripts/serve.sh); node and
# openssl run the README's URL-signing examples (tests/edge.rs); chromium
# (the Debian package) loads the playground page for tests/playground.rs;
# cjpeg (libjpeg-turbo-progs) writes the arithmetic-coded JPEGs of
# tests/jpeg.rs, which no other tool at hand can.
source scripts/need.sh
need_build_deps
need systemd-socket-activate systemd redis-server redis-server chattr e2fsprogs nasm nasm \
    node nodejs npm npm openssl openssl chromium chromium cjpeg libjpeg-turbo-progs
# playwright-core (npm, pinned by tests/browser/package-lock.json) drives
# that chromium; it downloads no browser of its own.
[ -d tests/browser/node_modules/playwright-core ] ||
    npm ci --prefix tests/browser --no-fund --no-audit --loglevel=error
# schemathesis (PyPI) fuzzes the HTTP API from /openapi.json (tests/api_schema.rs);
# pip puts its `st` command in the interpreter's scripts folder.
PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
export PATH
if ! command -v st >/dev/null 2>&1; then
    echo "installing: schemathesis" >&2
    python3 -m pip install -q --disable-pip-version-check 'schemathesis>=4,<5' >/dev/null
    hash -r
fi

# Pillow (with pillow-heif and pillow-jxl-plugin for HEIC and JPEG XL) is
# the reference decoder tests/fidelity.rs compares every corpus file with.
if ! python3 -c 'import PIL, pillow_heif, pillow_jxl' >/dev/null 2>&1; then
    echo "installing: pillow pillow-heif pillow-jxl-plugin" >&2
    python3 -m pip install -q --disable-pip-version-check \
        'pillow==13.0.0' 'pillow-heif==1.9.0' 'pillow-jxl-plugin==1.3.8' >/dev/null
fi
# A few of Pillow's own test images (into target/pillow-images).
./scripts/pillow-images.sh

# The crash-isolation tests need the test-only ops; they are never part of
# a release build.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --features test-ops -- --test-threads=2 2>&1 | tee "$log"
# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
