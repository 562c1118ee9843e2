#!/usr/bin/env bash
# Fetches the handful of Pillow test images the suite reads (files the
# shared corpus does not have: a JPEG whose scan is damaged, and more as
# the formats work needs them) from Pillow's pinned source release on
# PyPI, checked against its SHA-256, into target/pillow-images. Run by
# scripts/test.sh; idempotent (a second run does nothing).
set -euo pipefail
cd "$(dirname "$0")/.."

version=13.0.0
sha256=cdcd1ba258178f7356d74170c9a81ba4eab6a5d55748bc402a5a2a6fe6be3510
dest=target/pillow-images
# Paths inside the release's Tests/images folder: a JPEG whose scan is
# damaged (tests/jpeg.rs); TIFFs of 1/2/4-bit, signed and 32-bit grey,
# bits stored lowest first, and a BigTIFF (tests/tiff.rs); an ICO whose
# directory misstates its image's size, GIFs with no colour table and a
# BMP with a wrong planes field
# (tests/formats.rs).
files=(
    hopper_bad_exif.jpg
    tiff_gray_2_4_bpp/hopper2.tif tiff_gray_2_4_bpp/hopper2I.tif
    tiff_gray_2_4_bpp/hopper2IR.tif tiff_gray_2_4_bpp/hopper2R.tif
    tiff_gray_2_4_bpp/hopper4.tif tiff_gray_2_4_bpp/hopper4I.tif
    tiff_gray_2_4_bpp/hopper4IR.tif tiff_gray_2_4_bpp/hopper4R.tif
    hopper_gray_4bpp.tif 8bit.s.tif 16bit.s.tif 16_bit_binary_pgm.tiff
    hopper_bigtiff.tif
    hopper_unexpected.ico no_palette.gif no_palette_after_rgb.gif bmp/b/badplanes.bmp
)

have_all() {
    local f
    for f in "${files[@]}"; do [ -f "$dest/$f" ] || return 1; done
}
have_all && exit 0

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "fetching: Pillow $version test images" >&2
python3 -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
    -d "$work" "pillow==$version" >/dev/null
tarball="$work/pillow-$version.tar.gz"
echo "$sha256  $tarball" | sha256sum -c --quiet -
members=()
for f in "${files[@]}"; do members+=("pillow-$version/Tests/images/$f"); done
tar -xzf "$tarball" -C "$work" "${members[@]}"
mkdir -p "$dest"
for f in "${files[@]}"; do
    mkdir -p "$dest/$(dirname "$f")"
    cp "$work/pillow-$version/Tests/images/$f" "$dest/$f"
done
have_all
