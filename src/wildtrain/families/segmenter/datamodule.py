"""The canonical train/val split files as a LightningDataModule, and the dataset statistics the run records.
With data.stream the training images come from convert's WebDataset shards (wildtrain.data.stream)."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from wildtrain.data.masks import class_map
from wildtrain.data.shards import INDEX
from wildtrain.data.stream import Shards, ShardStream, decode_rgb, image_bytes, read_index
from wildtrain.errors import WildtrainError
from wildtrain.families.segmenter.data import (MaskDataset, Split, class_weights, reseed_worker,
                                               transforms)
from wildtrain.layout import SHARDS


def mask_item(sample: dict, transform, category_ids: list[int], missing: str):
    """One image and its class map from a shard (wildtrain.data.shards.write_shards): as MaskDataset gives them."""
    meta = json.loads(sample["json"])
    out = transform(image=decode_rgb(image_bytes(sample)[1]),
                    mask=class_map(meta["image"], meta["annotations"], category_ids, missing))
    return out["image"], out["mask"].long()


class MaskDataModule(pl.LightningDataModule):
    def __init__(self, coco: dict[str, Path], cfg, stream: bool = False, buffer: int = 1000):
        super().__init__()
        self.cfg, self.buffer = cfg, buffer
        self.train_split = Split(coco["train"], cfg.missing_masks)
        self.val_split = Split(coco["val"], cfg.missing_masks)
        self.classes = self.train_split.class_names
        self._counts = None
        self.shards = self._shards(Path(coco["train"]).parent / SHARDS) if stream else None

    def _shards(self, folder: Path) -> Shards:
        """The training split's shards (data.stream), checked against the split file they were written from."""
        shards = read_index(folder, "dvc repro convert")
        if shards.total != len(self.train_split):
            raise WildtrainError(f"{folder / INDEX}: {shards.total} samples, but {self.train_split.file} has "
                                 f"{len(self.train_split)} images; rerun convert (dvc repro convert)")
        return shards

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def pixel_counts(self):
        """Labelled pixels per class in the training split (computed once)."""
        if self._counts is None:
            self._counts = self.train_split.pixel_counts()
        return self._counts

    def class_weights(self) -> list[float] | None:
        return class_weights(self.pixel_counts(), self.cfg.class_weights)

    def stats(self, seed: int) -> dict:
        """What the run records about its data: image mean/std, class pixel frequencies, sizes, masks."""
        from wildtrain.data.stats import mean_std

        counts = self.pixel_counts()
        ms = mean_std(self.train_split.dataset, self.train_split.root, seed)
        return {"train_images": len(self.train_split), "val_images": len(self.val_split),
                "mean": ms["mean"], "std": ms["std"],
                "pixel_frequency": {c: round(float(n / max(1, counts.sum())), 6) for c, n in zip(self.classes, counts)},
                "annotations_with_mask": self.train_split.with_mask,
                "annotations_without_mask": self.train_split.without_mask}

    def _loader(self, split: Split, train: bool) -> DataLoader:
        c = self.cfg
        ds = MaskDataset(split, transforms(c.imgsz, c.augment if train else None, seed=c.seed))
        return DataLoader(ds, batch_size=c.batch, shuffle=train, num_workers=c.workers,
                          persistent_workers=c.workers > 0, worker_init_fn=reseed_worker if c.workers > 0 else None,
                          drop_last=train and len(ds) > c.batch)  # no batch of 1 for BatchNorm

    def _stream_loader(self) -> DataLoader:
        """Training images read from their shards: each rank and worker its own shards, equal batches per rank."""
        c, t = self.cfg, self.trainer
        ds = ShardStream(self.shards, partial(mask_item, category_ids=self.train_split.category_ids,
                                              missing=c.missing_masks),
                         transforms(c.imgsz, c.augment, seed=c.seed), batch=c.batch, buffer=self.buffer, seed=c.seed,
                         rank=t.global_rank if t else 0, world=t.world_size if t else 1,
                         epoch=t.current_epoch if t else 0)
        return DataLoader(ds, batch_size=c.batch, num_workers=c.workers, persistent_workers=c.workers > 0,
                          worker_init_fn=reseed_worker if c.workers > 0 else None, drop_last=True)

    def train_dataloader(self) -> DataLoader:
        if self.shards is not None:
            return self._stream_loader()
        return self._loader(self.train_split, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_split, train=False)
