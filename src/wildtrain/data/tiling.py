"""Tiling of large images: overlapping windows, boxes clipped per tile, tiles that remember where they came from.

The same `windows()` cuts images for training (here) and for sliced inference (wildtrain.slicing), so a
model sees at prediction time exactly the kind of tiles it was trained on.

Masks are cut with their image: a kept annotation's mask becomes the RLE of its part in the tile, the image's
`ignore_mask` too. Regions (`iscrowd: 1`, what image/mask pairs become) are kept in every tile they touch,
whatever `min_visibility` says (a lake is not an animal cut in half); an object kept in no tile because too
little of it is inside leaves its visible pixels in the tile's `ignore_mask`, so a segmenter is not taught
that they are background.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from wildtrain.data import masks
from wildtrain.data.coco import CocoDataset


def _starts(length: int, size: int, step: int) -> list[int]:
    if length <= size:
        return [0]
    starts = list(range(0, length - size, step))
    return starts + [length - size]  # the last tile is flush with the edge, never padded


def windows(width: int, height: int, size: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """(left, top, right, bottom) tiles of at most size x size covering the image, overlapping by `overlap`."""
    step = max(1, int(round(size * (1 - overlap))))
    return [(x, y, min(x + size, width), min(y + size, height))
            for y in _starts(height, size, step) for x in _starts(width, size, step)]


def clip_to_window(box: list[float], win: tuple[int, int, int, int]) -> list[float] | None:
    """The part of an [x, y, w, h] box inside the window, in the window's coordinates (None if none)."""
    x1, y1 = max(box[0], win[0]), max(box[1], win[1])
    x2, y2 = min(box[0] + box[2], win[2]), min(box[1] + box[3], win[3])
    if x2 <= x1 or y2 <= y1:
        return None
    return [x1 - win[0], y1 - win[1], x2 - x1, y2 - y1]


def tile_dataset(ds: CocoDataset, image_root: Path, out_root: Path, prefix: str, size: int, overlap: float,
                 min_visibility: float, empty_ratio: float, seed: int) -> CocoDataset:
    """Cut every image into PNG tiles under out_root/prefix; a box is kept in a tile when at least
    min_visibility of its area is inside; a fraction `empty_ratio` of tiles without boxes is kept."""
    rng = np.random.default_rng([seed, len(prefix)])
    by_image = ds.annotations_by_image()
    images, anns = [], []
    for im in ds.images:
        stem = Path(im["file_name"]).with_suffix("").as_posix().replace("/", "__")
        cut = _MaskCutter(im)
        with Image.open(image_root / im["file_name"]) as img:
            img = img.convert("RGB")
            for win in windows(im["width"], im["height"], size, overlap):
                boxes, hidden = [], []
                for a in by_image[im["id"]]:
                    part = clip_to_window(a["bbox"], win)
                    if part is None:
                        continue
                    if a.get("iscrowd") and masks.has_mask(a):
                        part = cut.region_box(a, win)
                        if part is not None:
                            boxes.append((a, part))
                    elif part[2] * part[3] >= min_visibility * a["bbox"][2] * a["bbox"][3]:
                        boxes.append((a, part))
                    elif masks.has_mask(a):
                        hidden.append(a)
                if not boxes and rng.random() >= empty_ratio:
                    continue
                name = f"{prefix}/{stem}__{win[0]}_{win[1]}.png"
                (out_root / name).parent.mkdir(parents=True, exist_ok=True)
                img.crop(win).save(out_root / name)
                tile = {"id": len(images) + 1, "file_name": name, "width": win[2] - win[0], "height": win[3] - win[1],
                        "source_id": im["id"], "source_file": im["file_name"], "offset": [win[0], win[1]]}
                if "group" in im:
                    tile["group"] = im["group"]
                ignore = cut.ignore(win, hidden)
                if ignore is not None:
                    tile["ignore_mask"] = ignore
                images.append(tile)
                for a, part in boxes:
                    ann = {"id": len(anns) + 1, "image_id": tile["id"], "category_id": a["category_id"],
                           "bbox": part, "area": part[2] * part[3], "iscrowd": a.get("iscrowd", 0),
                           "source_annotation": a["id"]}
                    if masks.has_mask(a):
                        ann["segmentation"] = masks.encode(cut.part(a, win))
                    anns.append(ann)
    return CocoDataset(images=images, annotations=anns, categories=list(ds.categories), info=dict(ds.info))


class _MaskCutter:
    """One image's masks, each decoded once and kept only within its own box, cut per window."""

    def __init__(self, image: dict):
        self.image, self.h, self.w = image, image["height"], image["width"]
        self.local: dict = {}  # id(annotation) or "ignore" -> (mask within its box, x, y)

    def _cut(self, key, seg, win: tuple[int, int, int, int]) -> np.ndarray:
        """The mask `seg` inside the window, window-sized."""
        if key not in self.local:
            full = masks.decode(seg, self.h, self.w)
            box = masks.bbox(full) or [0, 0, 0, 0]
            x, y = int(box[0]), int(box[1])
            self.local[key] = (full[y:y + int(box[3]), x:x + int(box[2])], x, y)
        local, x, y = self.local[key]
        out = np.zeros((win[3] - win[1], win[2] - win[0]), bool)
        x1, y1 = max(x, win[0]), max(y, win[1])
        x2, y2 = min(x + local.shape[1], win[2]), min(y + local.shape[0], win[3])
        if x2 > x1 and y2 > y1:
            out[y1 - win[1]:y2 - win[1], x1 - win[0]:x2 - win[0]] = local[y1 - y:y2 - y, x1 - x:x2 - x]
        return out

    def part(self, a: dict, win: tuple[int, int, int, int]) -> np.ndarray:
        return self._cut(id(a), a["segmentation"], win)

    def region_box(self, a: dict, win: tuple[int, int, int, int]) -> list[float] | None:
        """A region's tight box inside the window (None when none of its pixels are)."""
        return masks.bbox(self.part(a, win))

    def ignore(self, win: tuple[int, int, int, int], hidden: list[dict]) -> dict | None:
        """The tile's ignore mask: the image's, cut, plus the visible pixels of objects the tile did not keep."""
        out = np.zeros((win[3] - win[1], win[2] - win[0]), bool)
        if self.image.get("ignore_mask"):
            out |= self._cut("ignore", self.image["ignore_mask"], win)
        for a in hidden:
            out |= self.part(a, win)
        return masks.encode(out) if out.any() else None
