"""Compares pixfork's decodes with Pillow's (tests/fidelity.rs).

Reads lines "SOURCE<TAB>OURS" on stdin: a corpus file and pixfork's
lossless PNG of it (`convert?format=png`, EXIF orientation applied).
Pillow decodes SOURCE (pillow-heif for HEIC/HEIF, pillow-jxl-plugin for
JPEG XL), turns it upright as its EXIF says, converts it to sRGB by its
embedded ICC profile with LittleCMS (ImageCms, relative colorimetric, as
pixfork does with moxcms; a profile that does not load, or one of a CMYK
picture, is left unapplied, as pixfork leaves it), and both are compared
at 8 bits as premultiplied RGBA (the colour of fully transparent pixels is
no part of the picture). Prints one JSON object a line:
{"file", "pillow_size", "ours_size", "mad": [r, g, b, a], "error"}.
"""

import io
import json
import sys

from PIL import Image, ImageChops, ImageCms, ImageOps, ImageStat

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


def to_srgb(im):
    """The picture converted from its embedded ICC profile to sRGB."""
    icc = im.info.get("icc_profile")
    if not icc or im.mode not in ("RGB", "RGBA", "L", "LA"):
        return im
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except (OSError, ImageCms.PyCMSError):
        return im
    srgb = ImageCms.createProfile("sRGB")
    intent = ImageCms.Intent.RELATIVE_COLORIMETRIC
    alpha = im.getchannel("A") if im.mode in ("RGBA", "LA") else None
    colour = im.convert("L" if im.mode in ("L", "LA") else "RGB")
    try:
        out = ImageCms.profileToProfile(
            colour, profile, srgb, renderingIntent=intent, outputMode="RGB"
        )
    except ImageCms.PyCMSError:  # a grey profile on RGB data, and the like
        return im
    if alpha is not None:
        out.putalpha(alpha)
    return out


def compare(source, ours):
    theirs = Image.open(source)
    theirs.seek(0)
    theirs = to_srgb(ImageOps.exif_transpose(theirs))
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
