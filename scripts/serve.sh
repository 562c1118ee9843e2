#!/usr/bin/env bash
# Builds the release binaries and runs pixfork on its embedded defaults
# (http://127.0.0.1:8080, jobs under ./pixfork-state); arguments are passed
# to pixfork (`./scripts/serve.sh --help` lists the flags).
#
# Before the first build it installs what the build needs (cmake, g++ and
# the HEVC and AV1 decoder libraries, see scripts/need.sh), and nasm when it
# is missing and this is a
# Debian machine run as root: with nasm, libjpeg-turbo is built with its
# SIMD kernels (JPEG decoding about 2x faster). Without it the build still
# works, on the C fallback.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/need.sh
# cmake, g++, libde265 and dav1d: the build cannot do without them.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    need_build_deps
fi
if ! command -v nasm >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        need nasm nasm || echo "could not install nasm; building without SIMD JPEG decoding" >&2
    else
        echo "nasm not found: building without SIMD JPEG decoding (install nasm, then cargo clean -p mozjpeg-sys)" >&2
    fi
fi
cargo build --release --bins
exec ./target/release/pixfork "$@"
