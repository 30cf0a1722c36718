"""Tiling of large images: overlapping windows, boxes clipped per tile, tiles that remember where they came from.

The same `windows()` cuts images for training (here) and for sliced inference (wildtrain.slicing), so a
model sees at prediction time exactly the kind of tiles it was trained on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

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
        with Image.open(image_root / im["file_name"]) as img:
            img = img.convert("RGB")
            for win in windows(im["width"], im["height"], size, overlap):
                boxes = []
                for a in by_image[im["id"]]:
                    part = clip_to_window(a["bbox"], win)
                    if part is not None and part[2] * part[3] >= min_visibility * a["bbox"][2] * a["bbox"][3]:
                        boxes.append((a, part))
                if not boxes and rng.random() >= empty_ratio:
                    continue
                name = f"{prefix}/{stem}__{win[0]}_{win[1]}.png"
                (out_root / name).parent.mkdir(parents=True, exist_ok=True)
                img.crop(win).save(out_root / name)
                tile = {"id": len(images) + 1, "file_name": name, "width": win[2] - win[0], "height": win[3] - win[1],
                        "source_id": im["id"], "source_file": im["file_name"], "offset": [win[0], win[1]]}
                if "group" in im:
                    tile["group"] = im["group"]
                images.append(tile)
                for a, part in boxes:
                    anns.append({"id": len(anns) + 1, "image_id": tile["id"], "category_id": a["category_id"],
                                 "bbox": part, "area": part[2] * part[3], "iscrowd": a.get("iscrowd", 0),
                                 "source_annotation": a["id"]})
    return CocoDataset(images=images, annotations=anns, categories=list(ds.categories), info=dict(ds.info))
