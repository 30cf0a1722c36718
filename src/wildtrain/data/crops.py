"""ROI crops for classification: each canonical box cut out (with padding) into an ImageFolder layout.

`<out>/<split>/<class name>/<image stem>_<annotation id>.png`, plus optional `background/` crops taken
where no box is, so a species classifier can also learn "not an animal".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from wildtrain.data.coco import CocoDataset

BACKGROUND = "background"


def crop_box(box: list[float], width: int, height: int, padding: float, min_size: int) -> tuple[int, int, int, int]:
    """Pixel crop (left, top, right, bottom) around an [x, y, w, h] box: padded, at least min_size, inside the image."""
    x, y, w, h = box
    pw, ph = w * padding, h * padding
    cx, cy = x + w / 2, y + h / 2
    half_w, half_h = max(w / 2 + pw, min_size / 2), max(h / 2 + ph, min_size / 2)
    left, top = max(0, int(np.floor(cx - half_w))), max(0, int(np.floor(cy - half_h)))
    right, bottom = min(width, int(np.ceil(cx + half_w))), min(height, int(np.ceil(cy + half_h)))
    return left, top, max(right, left + 1), max(bottom, top + 1)


def _free_window(rng: np.random.Generator, boxes: list[list[float]], width: int, height: int,
                 size: int) -> tuple[int, int, int, int] | None:
    if size >= width or size >= height:
        return None
    for _ in range(30):
        left, top = int(rng.integers(0, width - size)), int(rng.integers(0, height - size))
        if all(left >= x + w or left + size <= x or top >= y + h or top + size <= y for x, y, w, h in boxes):
            return left, top, left + size, top + size
    return None


def image_stem(im: dict) -> str:
    """The part of a crop's file name that names its image (`<image stem>_<annotation id | bgK>.png`)."""
    return Path(im["file_name"]).with_suffix("").as_posix().replace("/", "__")


def write_crops(splits: dict[str, CocoDataset], image_root: Path, out_dir: Path, padding: float, min_size: int,
                background_per_image: int, seed: int) -> dict[str, dict[str, int]]:
    """Write crops for every split; return counts per split and class (every box gives exactly one crop)."""
    counts: dict[str, dict[str, int]] = {}
    for split, ds in splits.items():
        names = dict(zip(ds.category_ids, ds.class_names))
        classes = list(ds.class_names) + ([BACKGROUND] if background_per_image else [])
        for c in classes:
            (out_dir / split / c).mkdir(parents=True, exist_ok=True)
        counts[split] = {c: 0 for c in classes}
        by_image = ds.annotations_by_image()
        rng = np.random.default_rng([seed, len(split)])
        for im in ds.images:
            anns = by_image[im["id"]]
            stem = image_stem(im)
            with Image.open(image_root / im["file_name"]) as img:
                img = img.convert("RGB")
                for a in anns:
                    region = crop_box(a["bbox"], img.width, img.height, padding, min_size)
                    name = names[a["category_id"]]
                    img.crop(region).save(out_dir / split / name / f"{stem}_{a['id']}.png")
                    counts[split][name] += 1
                sizes = [max(a["bbox"][2], a["bbox"][3]) for a in anns] or [max(min_size, 24)]
                for k in range(background_per_image):
                    size = int(max(min_size, np.median(sizes) * (1 + 2 * padding)))
                    region = _free_window(rng, [a["bbox"] for a in anns], img.width, img.height, size)
                    if region is not None:
                        img.crop(region).save(out_dir / split / BACKGROUND / f"{stem}_bg{k}.png")
                        counts[split][BACKGROUND] += 1
    return counts
