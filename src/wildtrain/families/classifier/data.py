"""The ROI crops (`<root>/<split>/<class>/*.png`): scanned, checked and preprocessed (no Lightning here,
so evaluation and export start fast; the LightningDataModule is in datamodule.py).

Problems a user's crops really have are refused up front, one line each: an empty class folder, a class
with training crops but none to validate on, a class unknown to training, an unreadable image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from wildtrain.errors import WildtrainError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet statistics, what torchvision backbones expect


@dataclass(frozen=True)
class Split:
    files: list[Path]
    labels: list[int]

    def counts(self, num_classes: int) -> list[int]:
        return np.bincount(np.asarray(self.labels, dtype=int), minlength=num_classes).tolist()


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _check_readable(files: list[Path]) -> None:
    from PIL import Image, UnidentifiedImageError

    for f in files:
        try:
            with Image.open(f) as im:
                im.verify()
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
            raise WildtrainError(f"{f}: unreadable image ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None


def scan_classes(train_dir: Path) -> list[str]:
    """Class names = the sub-folders of the training split, sorted; each must hold at least one image."""
    if not train_dir.is_dir():
        raise WildtrainError(f"{train_dir}: crops folder not found (run the convert stage with convert.crops.enabled)")
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    if not classes:
        raise WildtrainError(f"{train_dir}: no class folders (expected <class name>/*.png)")
    for c in classes:
        if not _images(train_dir / c):
            raise WildtrainError(f"{train_dir / c}: empty class folder (no images to train class '{c}')")
    return classes


def scan_split(split_dir: Path, classes: list[str], require_all: bool, check_images: bool = True) -> Split:
    """Files and labels of one split. `require_all`: every training class must have images here (val)."""
    if not split_dir.is_dir():
        raise WildtrainError(f"{split_dir}: crops folder not found")
    index = {c: i for i, c in enumerate(classes)}
    files, labels = [], []
    for folder in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        found = _images(folder)
        if folder.name not in index:
            if found:
                raise WildtrainError(f"{folder}: class '{folder.name}' has no training crops "
                                     f"(training classes: {', '.join(classes)})")
            continue
        files += found
        labels += [index[folder.name]] * len(found)
    if require_all:
        absent = [c for c in classes if index[c] not in set(labels)]
        if absent:
            raise WildtrainError(f"{split_dir}: class '{absent[0]}' is present in train but has no crops here "
                                 f"(every class needs validation crops; re-split or drop the class)")
    if not files:
        raise WildtrainError(f"{split_dir}: no images")
    if check_images:
        _check_readable(files)
    return Split(files, labels)


def transforms(imgsz: int, augment=None, seed: int | None = None):
    """albumentations pipeline: resize, the configured augmentations (training only), normalize, to tensor.

    albumentations keeps its own random state (global seeds do not reach it): `seed` makes runs repeatable."""
    import albumentations as A
    from albumentations.pytorch import ToTensorV2

    steps = [A.Resize(imgsz, imgsz)]
    if augment is not None:
        steps += [A.HorizontalFlip(p=augment.hflip), A.VerticalFlip(p=augment.vflip),
                  A.RandomRotate90(p=augment.rotate90), A.RandomBrightnessContrast(p=augment.brightness_contrast)]
    return A.Compose(steps + [A.Normalize(mean=MEAN, std=STD), ToTensorV2()], seed=seed)


def reseed_worker(worker_id: int) -> None:
    """DataLoader workers start with copies of one augmentation state: give each its own, derived from the
    loader's seed (itself fixed by seed_everything), so workers differ and runs repeat."""
    import torch

    info = torch.utils.data.get_worker_info()
    info.dataset.transform.set_random_seed(info.seed % 2**32)


def load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


class CropDataset(Dataset):
    def __init__(self, split: Split, transform):
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split.files)

    def __getitem__(self, i: int):
        image = self.transform(image=load_rgb(self.split.files[i]))["image"]
        return image, self.split.labels[i]
