"""One image checked and normalized: decoded fully, EXIF orientation applied, converted to 8-bit RGB.

Runs in worker processes (validation of thousands of images uses every core), so it takes and returns
plain values. An image that needs no change is copied byte for byte. The content hashes that find
duplicate scenes under other file names are computed here, from the image already decoded.
"""

from __future__ import annotations

import hashlib
import shutil
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ORIENTATION = 0x0112
FLAT = 1.0  # grey levels: a thumbnail with less contrast than this is featureless (no perceptual hash)
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601, as PIL's convert("L")
_DCT = np.cos(np.pi * (2 * np.arange(32)[None, :] + 1) * np.arange(32)[:, None] / 64).astype(np.float32)  # DCT-II rows
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


def orient_point(x: float, y: float, orientation: int, width: int, height: int) -> tuple[float, float]:
    """A point of the stored frame (width x height) -> where it is once the orientation is applied."""
    move = _MOVES.get(orientation)
    return (x, y) if move is None else move(x, y, width, height)


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


def displayed_rgb(img: Image.Image) -> tuple[Image.Image, int, bool]:
    """A loaded image as it is displayed, in 8-bit RGB: (image, EXIF orientation, whether the mode changed)."""
    orientation = int(img.getexif().get(ORIENTATION, 1) or 1)
    out = ImageOps.exif_transpose(img) if orientation in _MOVES else img
    converted = out.mode != "RGB"
    return (to_rgb(out) if converted else out), orientation, converted


def pixel_digest(src: str) -> str:
    """sha256 of an image's displayed RGB pixels and their shape: equal exactly when the decoded images are.

    A full pass over the pixels costs as much as decoding a JPEG, so it is not done for every image: validation
    calls it (a second decode) only for the few images whose fingerprints are equal.
    """
    with Image.open(src) as img:
        img.load()
        pixels = np.asarray(displayed_rgb(img)[0])
    digest = hashlib.sha256(repr(pixels.shape).encode())
    digest.update(pixels)
    return digest.hexdigest()


def content_hashes(img: Image.Image) -> tuple[str, int | None]:
    """(fingerprint, 64-bit pHash) of a displayed 8-bit RGB image, from a 256x256 point sample and 16 full rows.

    Identical pixels always give the same fingerprint and different images almost never do (validation confirms
    equal fingerprints with pixel_digest). The pHash (is each of the 8x8 lowest-frequency DCT coefficients of a
    32x32 grey thumbnail above their median) survives re-encoding: a JPEG copy differs in a few bits. The
    thumbnail averages the point sample (0.4 ms on 2000x2000, where a full box reduction reads every pixel:
    3.5 ms) and is as stable under re-encoding. Unlike a gradient hash (dHash) the pHash is not taken over by
    what every frame of a camera shares (vignetting on uniform ground made all such frames equal under dHash).
    A featureless image (a blank frame) gets none: its bits would be float noise, the same for every blank frame.
    """
    w, h = img.size
    small = img.resize((256, 256), Image.Resampling.NEAREST).resize((32, 32), Image.Resampling.BOX)
    rows = b"".join(img.crop((0, y, w, y + 1)).tobytes() for y in sorted({round(k * (h - 1) / 15) for k in range(16)}))
    fingerprint = hashlib.sha256(f"{w}x{h}".encode() + small.tobytes() + rows).hexdigest()
    grey = np.asarray(small, dtype=np.float32) @ _LUMA
    if float(grey.max() - grey.min()) < FLAT:
        return fingerprint, None
    low = (_DCT @ grey @ _DCT.T)[:8, :8]
    return fingerprint, int.from_bytes(np.packbits(low > np.median(low)).tobytes(), "big")


def normalize_image(src: str, dst: str) -> dict:
    """Check src fully and write dst as 8-bit RGB with orientation applied; {'error': ...} when unusable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(src) as img:
                img.load()  # decodes every byte: truncated or corrupt files fail here, not in training
                fmt = "JPEG" if img.format == "MPO" else (img.format or "PNG")
                stored, mode = img.size, img.mode
                out, orientation, converted = displayed_rgb(img)
                Path(dst).parent.mkdir(parents=True, exist_ok=True)
                if converted or orientation in _MOVES:
                    out.save(dst, format=fmt, **({"quality": 95, "subsampling": 0} if fmt == "JPEG" else {}))
                else:
                    shutil.copyfile(src, dst)
                size = out.size
                fingerprint, phash = content_hashes(out)
    except Exception as e:  # noqa: BLE001 — PIL raises OSError, SyntaxError, ValueError... for broken files
        Path(dst).unlink(missing_ok=True)
        return {"error": f"unreadable image ({type(e).__name__}: {e})".replace("\n", " ")}
    return {"stored": list(stored), "size": list(size), "mode": mode, "orientation": orientation,
            "converted": converted, "fingerprint": fingerprint, "phash": phash}


def load_rgb(path: str | Path) -> np.ndarray:
    """An image file as an HxWx3 uint8 RGB array as it is displayed (EXIF orientation applied, 16-bit scaled,
    alpha dropped) — what a model is given, whoever reads the file."""
    with Image.open(path) as img:
        img.load()
        return np.asarray(displayed_rgb(img)[0])
