# Sourced by the scripts: `need COMMAND PACKAGE ...` installs each Debian
# PACKAGE whose COMMAND is missing (one apt-get run for all of them).
need() {
    local missing=()
    while [ $# -ge 2 ]; do
        command -v "$1" >/dev/null 2>&1 || missing+=("$2")
        shift 2
    done
    install_packages "${missing[@]}"
}

# One apt-get run for the packages named (none: nothing to do).
install_packages() {
    if [ $# -gt 0 ]; then
        echo "installing: $*" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    fi
}

# `need_lib PKG_CONFIG_NAME PACKAGE ...`: the same for C libraries the
# build links, found by pkg-config.
need_lib() {
    need pkg-config pkg-config
    local missing=()
    while [ $# -ge 2 ]; do
        pkg-config --exists "$1" 2>/dev/null || missing+=("$2")
        shift 2
    done
    install_packages "${missing[@]}"
}

# What `cargo build` needs beyond a C compiler: cmake and a C++ compiler
# build the vendored libheif (HEIC and AVIF input) against Debian's HEVC
# (libde265) and AV1 (dav1d) decoders.
need_build_deps() {
    need cmake cmake g++ g++
    need_lib libde265 libde265-dev dav1d libdav1d-dev
}
