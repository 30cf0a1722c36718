"""Deterministic, group-aware, stratified train/val/test split.

Units that must not be separated (all images of a `group` such as a flight or site, all tiles of one
source image) go to one split together, so nothing leaks. First every class with units enough gets one
unit in test, val and train (rarest classes first); then the rest fill the split furthest below its
share of images. Same images + seed -> same split, whatever the input order.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from wildtrain.data.coco import CocoDataset
from wildtrain.layout import SPLITS



def unit_key(im: dict) -> str:
    """What keeps images together: their group, else their source image (tiles), else the image itself."""
    if im.get("group") not in (None, ""):
        return f"group:{im['group']}"
    if im.get("source_file"):
        return f"image:{im['source_file']}"
    return f"image:{im['file_name']}"


def split_ids(dataset: CocoDataset, val_fraction: float, test_fraction: float, seed: int) -> dict[str, list[int]]:
    units: dict[str, list[dict]] = defaultdict(list)
    for im in sorted(dataset.images, key=lambda im: im["file_name"]):
        units[unit_key(im)].append(im)
    keys = sorted(units)
    keys = [keys[i] for i in np.random.default_rng(seed).permutation(len(keys))]
    classes_of = {k: set() for k in keys}
    unit_of = {im["id"]: k for k, ims in units.items() for im in ims}
    for a in dataset.annotations:
        classes_of[unit_of[a["image_id"]]].add(a["category_id"])
    n = len(dataset.images)
    small = len(keys) < 3
    target = {"test": 0 if small else max(1, round(n * test_fraction)),
              "val": 0 if small else max(1, round(n * val_fraction))}
    target["train"] = n - target["test"] - target["val"]
    assigned: dict[str, str] = {}
    count = dict.fromkeys(SPLITS, 0)

    def put(key: str, split: str) -> None:
        assigned[key] = split
        count[split] += len(units[key])

    units_with = defaultdict(list)
    for k in keys:
        for c in classes_of[k]:
            units_with[c].append(k)
    for c in sorted(units_with, key=lambda c: (len(units_with[c]), c)):  # rarest class first
        if len(units_with[c]) < 3:
            continue
        for split in ("test", "val", "train"):
            if any(assigned.get(k) == split for k in units_with[c]):
                continue
            free = [k for k in units_with[c] if k not in assigned and count[split] + len(units[k]) <= max(
                target[split], 1)]
            if free:
                put(min(free, key=lambda k: len(units[k])), split)
    for k in sorted((k for k in keys if k not in assigned), key=lambda k: -len(units[k])):
        put(k, max(SPLITS, key=lambda s: ((target[s] - count[s]) / max(target[s], 1), s == "train")))
    out = {s: [] for s in SPLITS}
    for k, split in assigned.items():
        out[split] += [im["id"] for im in units[k]]
    return {s: sorted(out[s]) for s in SPLITS}


def split_dataset(dataset: CocoDataset, val_fraction: float, test_fraction: float, seed: int) -> dict[str, CocoDataset]:
    return {name: dataset.subset(set(ids)) for name, ids in split_ids(dataset, val_fraction, test_fraction, seed).items()}
