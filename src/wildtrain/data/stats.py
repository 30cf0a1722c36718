"""Dataset statistics for metrics/data.json: counts per split and class, box sizes, image mean/std."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from wildtrain.data.coco import CocoDataset

MEAN_STD_IMAGES = 200  # images sampled (deterministically) for mean/std; enough for 3 decimals


def split_summary(ds: CocoDataset) -> dict:
    with_boxes = {a["image_id"] for a in ds.annotations}
    return {"images": len(ds.images), "boxes": len(ds.annotations),
            "empty_images": len(ds.images) - len(with_boxes), "classes": ds.class_counts()}


def box_sizes(ds: CocoDataset) -> dict:
    """Box side (sqrt of area), width and height percentiles in px, and COCO's small/medium/large counts."""
    if not ds.annotations:
        return {"count": 0}
    wh = np.array([a["bbox"][2:] for a in ds.annotations], dtype=np.float64)
    side = np.sqrt(wh[:, 0] * wh[:, 1])
    q = (0, 10, 50, 90, 100)

    def pct(v: np.ndarray) -> dict:
        return {f"p{k}": round(float(x), 2) for k, x in zip(q, np.percentile(v, q))}

    return {"count": len(side), "side": pct(side), "width": pct(wh[:, 0]), "height": pct(wh[:, 1]),
            "small": int((side < 32).sum()), "medium": int(((side >= 32) & (side < 96)).sum()),
            "large": int((side >= 96).sum())}


def mean_std(ds: CocoDataset, image_root: Path, seed: int) -> dict:
    """Per-channel RGB mean and std in 0..1 over a fixed sample of images (all when few)."""
    images = sorted(ds.images, key=lambda im: im["file_name"])
    if len(images) > MEAN_STD_IMAGES:
        pick = np.random.default_rng(seed).choice(len(images), MEAN_STD_IMAGES, replace=False)
        images = [images[i] for i in sorted(pick)]
    total, sq, n = np.zeros(3), np.zeros(3), 0
    for im in images:
        with Image.open(image_root / im["file_name"]) as img:
            arr = np.asarray(img.convert("RGB"), dtype=np.float64).reshape(-1, 3) / 255.0
        total += arr.sum(0)
        sq += (arr ** 2).sum(0)
        n += len(arr)
    if n == 0:
        return {"mean": [0.0] * 3, "std": [0.0] * 3, "images": 0}
    mean = total / n
    std = np.sqrt(np.maximum(sq / n - mean ** 2, 0))
    return {"mean": [round(float(v), 4) for v in mean], "std": [round(float(v), 4) for v in std],
            "images": len(images)}


def class_count_rows(splits: dict[str, CocoDataset]) -> list[dict]:
    """Rows for the DVC bar plot: boxes per class over all splits."""
    totals: dict[str, int] = {}
    for ds in splits.values():
        for name, n in ds.class_counts().items():
            totals[name] = totals.get(name, 0) + n
    return [{"class": name, "count": n} for name, n in totals.items()]
