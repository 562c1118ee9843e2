"""Compares pixfork's decodes with Pillow's (tests/fidelity.rs).

Reads lines "SOURCE<TAB>OURS" on stdin: a corpus file and pixfork's
lossless PNG of it (`convert?format=png`, EXIF orientation applied).
Pillow decodes SOURCE (pillow-heif for HEIC/HEIF, pillow-jxl-plugin for
JPEG XL), turns it upright as its EXIF says, and both pictures are compared
at 8 bits as premultiplied RGBA (the colour of fully transparent pixels is
no part of the picture). Prints one JSON object a line:
{"file", "pillow_size", "ours_size", "mad": [r, g, b, a], "error"}.
"""

import json
import sys

from PIL import Image, ImageChops, ImageOps, ImageStat

try:
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # HEIC files then report an error, not a pass
    pass
try:
    import pillow_jxl  # noqa: F401  (registers the JPEG XL opener)
except ImportError:
    pass


def rgba8(im):
    """RGBA at 8 bits; 16-bit grey is scaled, not clipped as convert() does."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        im = im.point(lambda v: v / 256).convert("L")
    return im.convert("RGBA")


def premultiplied(im):
    """Colour x alpha / 255 per channel, alpha kept (Pillow's own C code)."""
    r, g, b, a = im.split()
    return Image.merge("RGBA", [ImageChops.multiply(c, a) for c in (r, g, b)] + [a])


def compare(source, ours):
    theirs = Image.open(source)
    theirs.seek(0)
    theirs = ImageOps.exif_transpose(theirs)
    mine = Image.open(ours)
    result = {"file": source, "pillow_size": list(theirs.size), "ours_size": list(mine.size)}
    if theirs.size != mine.size:
        result["error"] = "sizes differ"
        return result
    diff = ImageChops.difference(premultiplied(rgba8(theirs)), premultiplied(rgba8(mine)))
    result["mad"] = [round(m, 3) for m in ImageStat.Stat(diff).mean]
    return result


for line in sys.stdin:
    line = line.rstrip("\n")
    if not line:
        continue
    source, ours = line.split("\t")
    try:
        out = compare(source, ours)
    except Exception as e:  # reported per file; the test decides
        out = {"file": source, "error": f"{type(e).__name__}: {e}"}
    print(json.dumps(out), flush=True)
