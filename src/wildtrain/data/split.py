"""Deterministic train/val/test split by seed: same images + seed -> same split, no image in two splits."""

from __future__ import annotations

import numpy as np

from wildtrain.data.coco import CocoDataset

SPLITS = ("train", "val", "test")


def split_ids(dataset: CocoDataset, val_fraction: float, test_fraction: float, seed: int) -> dict[str, list[int]]:
    """Shuffle images (ordered by file name, so input order does not matter) and cut val/test off the front."""
    ids = [im["id"] for im in sorted(dataset.images, key=lambda im: im["file_name"])]
    n = len(ids)
    order = np.random.default_rng(seed).permutation(n)
    shuffled = [ids[i] for i in order]
    n_test = max(1, round(n * test_fraction)) if n >= 3 else 0
    n_val = max(1, round(n * val_fraction)) if n >= 3 else 0
    return {
        "test": sorted(shuffled[:n_test]),
        "val": sorted(shuffled[n_test:n_test + n_val]),
        "train": sorted(shuffled[n_test + n_val:]),
    }


def split_dataset(dataset: CocoDataset, val_fraction: float, test_fraction: float, seed: int) -> dict[str, CocoDataset]:
    return {name: dataset.subset(set(ids)) for name, ids in split_ids(dataset, val_fraction, test_fraction, seed).items()}
