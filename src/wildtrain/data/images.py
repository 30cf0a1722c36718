"""One image checked and normalized: decoded fully, EXIF orientation applied, converted to 8-bit RGB.

Runs in worker processes (validation of thousands of images uses every core), so it takes and returns
plain values. An image that needs no change is copied byte for byte.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ORIENTATION = 0x0112
# EXIF orientation -> how a point (x, y) of the stored w x h frame moves when the orientation is applied.
_MOVES = {
    2: lambda x, y, w, h: (w - x, y),
    3: lambda x, y, w, h: (w - x, h - y),
    4: lambda x, y, w, h: (x, h - y),
    5: lambda x, y, w, h: (y, x),
    6: lambda x, y, w, h: (h - y, x),
    7: lambda x, y, w, h: (h - y, w - x),
    8: lambda x, y, w, h: (y, w - x),
}


def orient_box(box: list[float], orientation: int, width: int, height: int) -> list[float]:
    """An [x, y, w, h] box in the stored frame (width x height) -> the same box once the orientation is applied."""
    move = _MOVES.get(orientation)
    if move is None:
        return list(box)
    x, y, w, h = box
    pts = [move(px, py, width, height) for px, py in ((x, y), (x + w, y + h))]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB: 16/32-bit grey scaled down (not clipped), alpha dropped, palette and CMYK converted."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(np.round(arr * 255.0 / top), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("RGB")


def normalize_image(src: str, dst: str) -> dict:
    """Check src fully and write dst as 8-bit RGB with orientation applied; {'error': ...} when unusable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(src) as img:
                img.load()  # decodes every byte: truncated or corrupt files fail here, not in training
                fmt = "JPEG" if img.format == "MPO" else (img.format or "PNG")
                stored, mode = img.size, img.mode
                orientation = int(img.getexif().get(ORIENTATION, 1) or 1)
                out = ImageOps.exif_transpose(img) if orientation in _MOVES else img
                converted = out.mode != "RGB"
                if converted:
                    out = to_rgb(out)
                Path(dst).parent.mkdir(parents=True, exist_ok=True)
                if converted or orientation in _MOVES:
                    out.save(dst, format=fmt, **({"quality": 95, "subsampling": 0} if fmt == "JPEG" else {}))
                else:
                    shutil.copyfile(src, dst)
                size = out.size
    except Exception as e:  # noqa: BLE001 — PIL raises OSError, SyntaxError, ValueError... for broken files
        Path(dst).unlink(missing_ok=True)
        return {"error": f"unreadable image ({type(e).__name__}: {e})".replace("\n", " ")}
    return {"stored": list(stored), "size": list(size), "mode": mode, "orientation": orientation,
            "converted": converted}
