"""The segmenter's samples: the images (or tiles) of a canonical split file with their class maps, and the
transforms applied to an image and its mask together (no Lightning here, so evaluation and export start fast).

Classes: the background (class 0, named by the dataset's `info.background`, else "background") + the
dataset's categories in id order. A class map is rasterized from the annotations when a sample is read
(wildtrain.data.masks), so no mask files are written and large datasets are not held in memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from wildtrain.data.coco import load_coco
from wildtrain.data.images import load_rgb
from wildtrain.data.masks import IGNORE, class_map, has_mask
from wildtrain.errors import WildtrainError
from wildtrain.layout import image_root

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet statistics, what smp's encoders expect


class Split:
    """One canonical split file: image paths, annotations per image, class names."""

    def __init__(self, coco_file: Path, missing: str):
        if not Path(coco_file).is_file():
            raise WildtrainError(f"{coco_file}: not found; the segmenter trains on convert's output "
                                 f"(dvc repro convert)")
        ds = load_coco(coco_file)
        self.dataset, self.file, self.missing = ds, Path(coco_file), missing
        self.images = ds.images
        self.root = image_root(Path(coco_file), ds.info)
        by_image = ds.annotations_by_image()
        self.annotations = [by_image[im["id"]] for im in ds.images]
        self.category_ids = ds.category_ids
        self.class_names = [str(ds.info.get("background", "background")), *ds.class_names]
        self.with_mask = sum(1 for a in ds.annotations if has_mask(a))
        self.without_mask = len(ds.annotations) - self.with_mask
        if missing == "fail" and self.without_mask:
            first = next(im["file_name"] for im, anns in zip(self.images, self.annotations)
                         if any(not has_mask(a) for a in anns))
            raise WildtrainError(f"{coco_file}: {self.without_mask} annotation(s) have no mask (first in {first}); "
                                 f"segmenter.missing_masks: boxes trains on their filled boxes, ignore skips them")

    def __len__(self) -> int:
        return len(self.images)

    def image(self, i: int) -> np.ndarray:
        return load_rgb(self.root / self.images[i]["file_name"])

    def mask(self, i: int) -> np.ndarray:
        return class_map(self.images[i], self.annotations[i], self.category_ids, self.missing)

    def pixel_counts(self) -> np.ndarray:
        """Labelled pixels per class over the split (ignored pixels not counted)."""
        counts = np.zeros(len(self.class_names), np.int64)
        for i in range(len(self)):
            m = self.mask(i)
            counts += np.bincount(m[m != IGNORE].ravel(), minlength=len(counts))[:len(counts)]
        return counts


def class_weights(counts: np.ndarray, kind: str) -> list[float] | None:
    """Loss weights from pixel counts: 1/f (`inverse`) or 1/sqrt(f) (`sqrt_inverse`, milder: background is often
    99% of the pixels), mean 1."""
    if kind == "none":
        return None
    f = np.maximum(counts, 1) / max(1, counts.sum())
    w = 1 / f if kind == "inverse" else 1 / np.sqrt(f)
    return (w / w.mean()).tolist()


def resize(imgsz: int):
    """Long side to imgsz (area-averaged when shrinking), aspect kept: step one of every transform."""
    import albumentations as A

    return A.LongestMaxSize(max_size=imgsz, area_for_downscale="image")


def transforms(imgsz: int, augment=None, seed: int = 0, with_resize: bool = True):
    """[resize,] pad to imgsz x imgsz (top-left; padding ignored in the mask), [flips, 90° turns, brightness/
    contrast], normalize, to tensor — image and mask together. albumentations keeps its own random state:
    `seed` makes runs repeatable."""
    import albumentations as A
    import cv2
    from albumentations.pytorch import ToTensorV2

    steps = [resize(imgsz)] if with_resize else []
    steps.append(A.PadIfNeeded(min_height=imgsz, min_width=imgsz, position="top_left",
                               border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=IGNORE))
    if augment is not None:
        steps += [A.HorizontalFlip(p=augment.hflip), A.VerticalFlip(p=augment.vflip),
                  A.RandomRotate90(p=augment.rotate90), A.RandomBrightnessContrast(p=augment.brightness_contrast)]
    return A.Compose(steps + [A.Normalize(mean=MEAN, std=STD), ToTensorV2()], seed=seed)


def reseed_worker(worker_id: int) -> None:
    """DataLoader workers start with copies of one augmentation state: each gets its own, from the loader's seed."""
    import torch

    info = torch.utils.data.get_worker_info()
    info.dataset.transform.set_random_seed(info.seed % 2**32)


class MaskDataset(Dataset):
    def __init__(self, split: Split, transform):
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        out = self.transform(image=self.split.image(i), mask=self.split.mask(i))
        return out["image"], out["mask"].long()
