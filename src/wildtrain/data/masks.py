"""Masks in the canonical dataset: COCO segmentations (polygons or RLE, via pycocotools) and the class map of an image.

Canonical form, in pixel coordinates of the displayed image (COCO's corner convention: pixel i covers [i, i+1)):
- an annotation's `segmentation` is a list of polygons [[x1, y1, x2, y2, ...], ...] or an RLE {"size": [h, w],
  "counts": str} (uncompressed RLE is compressed on reading); image/mask pairs become one RLE region per class
  and image (`iscrowd: 1`);
- an image may carry `ignore_mask` (RLE): pixels nobody labelled — the ignore value of image/mask pairs, and the
  visible part of an object a tile did not keep.
The class map of an image (what a segmenter learns): 0 = background, k = the k-th category (ids sorted), IGNORE
where unknown. Overlapping masks are painted largest first, so a small object on a large region stays visible.
"""

from __future__ import annotations

import math

import numpy as np

IGNORE = 255  # class-map value of pixels that are neither trained on nor scored
MISSING = ("boxes", "ignore", "fail")  # an annotation without a mask: its box filled | its box ignored | refused
POLY_UPSAMPLE, POLY_TOLERANCE = 4, 0.35  # polygons(): tracing resolution and simplification (px)


def is_rle(seg) -> bool:
    return isinstance(seg, dict)


def has_mask(a: dict) -> bool:
    """COCO files often carry `segmentation: []` on box-only annotations: that is no mask."""
    seg = a.get("segmentation")
    return bool(seg) if isinstance(seg, (list, dict)) else False


def problem(seg) -> str | None:
    """Why a segmentation cannot be used (one phrase), or None."""
    if is_rle(seg):
        size, counts = seg.get("size"), seg.get("counts")
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
            return f"RLE without a [height, width] size ({size!r})"
        if isinstance(counts, list):
            if not all(isinstance(c, int) and c >= 0 for c in counts) or sum(counts) != size[0] * size[1]:
                return f"uncompressed RLE counts do not add up to {size[0]}x{size[1]} pixels"
            return None
        if not isinstance(counts, str) or not counts:
            return "RLE without counts"
        try:
            decode(seg, *size)
        except Exception as e:  # noqa: BLE001 — pycocotools raises ValueError/TypeError/... on garbage
            return f"undecodable RLE counts ({type(e).__name__})"
        return None
    if not isinstance(seg, list) or not seg:
        return f"segmentation is neither polygons nor RLE ({type(seg).__name__})"
    for poly in seg:
        if not (isinstance(poly, list) and len(poly) >= 6 and len(poly) % 2 == 0):
            return "a polygon needs an even number of coordinates, at least 3 points"
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in poly):
            return "a polygon has a non-finite or non-numeric coordinate"
    return None


def rle_size(seg) -> tuple[int, int] | None:
    """(height, width) an RLE was made for; None for polygons (they have no frame of their own)."""
    return tuple(seg["size"]) if is_rle(seg) else None


def encode(mask: np.ndarray) -> dict:
    """A boolean HxW mask -> compressed RLE with text counts (JSON-ready)."""
    from pycocotools import mask as coco_mask

    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def compress(seg):
    """Uncompressed RLE -> compressed; polygons as floats. Same pixels."""
    if is_rle(seg) and isinstance(seg["counts"], list):
        return encode(decode(seg, *seg["size"]))
    if is_rle(seg):
        return {"size": list(seg["size"]), "counts": seg["counts"]}
    return [[float(v) for v in poly] for poly in seg]


def decode(seg, height: int, width: int) -> np.ndarray:
    """Any segmentation -> a boolean height x width mask (polygons are clipped to the image)."""
    from pycocotools import mask as coco_mask

    if is_rle(seg):
        rle = coco_mask.frPyObjects(seg, *seg["size"]) if isinstance(seg["counts"], list) else seg
        return coco_mask.decode(rle).astype(bool)
    rles = coco_mask.frPyObjects([list(map(float, p)) for p in seg], height, width)
    return coco_mask.decode(coco_mask.merge(rles)).astype(bool)


def area(seg, height: int, width: int) -> int:
    return int(decode(seg, height, width).sum())


def bbox(mask: np.ndarray) -> list[float] | None:
    """Tight [x, y, w, h] of a boolean mask's pixels, or None when empty."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return None
    return [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)]


# EXIF orientation -> the PIL transpose that displays it (what ImageOps.exif_transpose does to the image)
_TRANSPOSE = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_270",
              7: "TRANSVERSE", 8: "ROTATE_90"}


def orient_array(arr: np.ndarray, orientation: int) -> np.ndarray:
    """A mask in the stored frame -> the displayed frame, by the very transpose applied to its image."""
    from PIL import Image

    if orientation not in _TRANSPOSE:
        return arr
    method = getattr(Image.Transpose, _TRANSPOSE[orientation])
    return np.asarray(Image.fromarray(arr).transpose(method))


def orient(seg, orientation: int, stored_w: int, stored_h: int):
    """A segmentation drawn on the stored frame (stored_w x stored_h) -> the displayed frame."""
    from wildtrain.data.images import orient_point

    if orientation not in _TRANSPOSE:
        return seg
    if is_rle(seg):
        m = decode(seg, stored_h, stored_w).astype(np.uint8)
        return encode(orient_array(m, orientation).astype(bool))
    out = []
    for poly in seg:
        pts = [orient_point(x, y, orientation, stored_w, stored_h) for x, y in zip(poly[0::2], poly[1::2])]
        out.append([float(v) for p in pts for v in p])
    return out


def crop(mask: np.ndarray, win: tuple[int, int, int, int]) -> np.ndarray:
    left, top, right, bottom = win
    return mask[top:bottom, left:right]


def polygons(mask: np.ndarray) -> list[list[float]]:
    """The outlines of a boolean mask's blobs as COCO polygons (holes are not kept: RLE keeps them).

    Traced on the mask upsampled POLY_UPSAMPLE times, so the outline runs along pixel edges rather than through
    pixel centres, then simplified by POLY_TOLERANCE px: rasterize a polygon and trace it back, and every point of
    the result lies within 1 px of the original (corners sharper than a right angle lose the sub-pixel part of
    their tip, which no raster holds)."""
    import cv2

    box = bbox(mask)
    if box is None:
        return []
    x0, y0 = int(box[0]), int(box[1])
    part = mask[y0:y0 + int(box[3]), x0:x0 + int(box[2])].astype(np.uint8)
    up = np.kron(np.pad(part, 1), np.ones((POLY_UPSAMPLE, POLY_UPSAMPLE), np.uint8))
    contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    out = []
    for c in contours:
        pts = (c.reshape(-1, 1, 2).astype(np.float32) + 0.5) / POLY_UPSAMPLE
        pts = cv2.approxPolyDP(pts, POLY_TOLERANCE, True).reshape(-1, 2).astype(np.float64)
        pts += (x0 - 1, y0 - 1)
        if len(pts) >= 3:
            out.append([round(float(v), 3) for v in pts.ravel()])
    return out


def _rle(seg, height: int, width: int):
    """pycocotools' RLE object of any segmentation (polygons merged), without decoding it."""
    from pycocotools import mask as coco_mask

    if is_rle(seg):
        return coco_mask.frPyObjects(seg, *seg["size"]) if isinstance(seg["counts"], list) else seg
    return coco_mask.merge(coco_mask.frPyObjects([list(map(float, p)) for p in seg], height, width))


def class_map(image: dict, annotations: list[dict], category_ids: list[int], missing: str = "boxes") -> np.ndarray:
    """The uint8 class map (height x width) of one image from its annotations; see the module docstring.

    `missing`: what an annotation without a mask means — its box filled with its class (`boxes`), its box
    unknown (`ignore`). Painted largest first (areas read from the RLEs, so one mask is decoded at a time),
    then the image's `ignore_mask`."""
    from pycocotools import mask as coco_mask

    h, w = image["height"], image["width"]
    out = np.zeros((h, w), np.uint8)
    index = {cid: k + 1 for k, cid in enumerate(category_ids)}
    layers = []
    for a in annotations:
        value = index[a["category_id"]]
        if has_mask(a):
            rle = _rle(a["segmentation"], h, w)
            layers.append((float(coco_mask.area(rle)), rle, value))
        else:
            x, y, bw, bh = a["bbox"]
            box = (max(0, math.floor(y)), math.ceil(y + bh), max(0, math.floor(x)), math.ceil(x + bw))
            layers.append((float(bw * bh), box, value if missing == "boxes" else IGNORE))
    for _, shape, value in sorted(layers, key=lambda layer: -layer[0]):
        if isinstance(shape, tuple):
            out[shape[0]:shape[1], shape[2]:shape[3]] = value
        else:
            out[coco_mask.decode(shape).astype(bool)] = value
    if image.get("ignore_mask"):
        out[decode(image["ignore_mask"], h, w)] = IGNORE
    return out
