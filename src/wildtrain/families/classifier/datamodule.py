"""The crops as a LightningDataModule: train/val loaders, class weights, dataset statistics. With data.stream the
training crops come from their WebDataset shards (wildtrain.data.stream); validation always reads the files."""

from __future__ import annotations

import io
import json
from functools import partial
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from wildtrain.data.shards import INDEX
from wildtrain.data.stream import Shards, ShardStream, image_bytes, read_index
from wildtrain.errors import WildtrainError
from wildtrain.families.classifier.data import (CropDataset, Split, load_rgb, reseed_worker, scan_classes,
                                                scan_split, transforms)
from wildtrain.io import read_json
from wildtrain.layout import SHARDS


def apply_plan(split: Split, train_dir: Path, plan_file: Path | None) -> tuple[Split, bool]:
    """The training split with each crop repeated as the rebalancing plan says (0: left out this epoch)."""
    plan = read_json(plan_file, "rebalancing plan") if plan_file is not None and plan_file.is_file() else {}
    if not plan.get("enabled"):
        return split, False
    copies = plan.get("copies", {})
    names = [f.relative_to(train_dir).as_posix() for f in split.files]
    if set(names) != set(copies):
        odd = sorted(set(names) ^ set(copies))[0]
        raise WildtrainError(f"{plan_file}: does not match {train_dir} (e.g. '{odd}'): rerun the rebalance_crops "
                             f"stage (dvc repro rebalance_crops)")
    files, labels = [], []
    for f, name, label in zip(split.files, names, split.labels):
        files += [f] * int(copies[name])
        labels += [label] * int(copies[name])
    return Split(files, labels), True


def crop_item(sample: dict, transform, index: dict[str, int]):
    """One crop from a shard (wildtrain.data.shards.write_crop_shards): the same tensor and label as CropDataset."""
    meta = json.loads(sample["json"])
    if meta["class"] not in index:
        raise ValueError(f"class '{meta['class']}' is not a training class (shards older than the crops: "
                         f"rerun convert)")
    image = transform(image=load_rgb(io.BytesIO(image_bytes(sample)[1])))["image"]
    return image, index[meta["class"]]


class CropDataModule(pl.LightningDataModule):
    """Train/val loaders over the crops; class imbalance by a weighted sampler when `imbalance: sampler`."""

    def __init__(self, root: Path, cfg, plan: Path | None = None, stream: bool = False, buffer: int = 1000):
        super().__init__()
        self.root, self.cfg, self.buffer = Path(root), cfg, buffer
        self.shards = self._shards(plan) if stream else None
        if self.shards is None:
            self.classes = scan_classes(self.root / "train")
            self.train_split, self.rebalanced = apply_plan(
                scan_split(self.root / "train", self.classes, require_all=True), self.root / "train", plan)
        self.val_split = scan_split(self.root / "val", self.classes, require_all=True)

    def _shards(self, plan: Path | None) -> Shards:
        """The training crops' shards (data.stream): classes and counts from their index, so no training file is
        listed or opened here."""
        if plan is not None and plan.is_file() and read_json(plan, "rebalancing plan").get("enabled"):
            raise WildtrainError(f"{plan}: the rebalancing plan (rebalance.enabled) repeats crop files and is not "
                                 f"applied to shards (data.stream); turn off one of them")
        shards = read_index(self.root / SHARDS, "dvc repro convert")
        counts = shards.meta.get("counts")
        if not isinstance(counts, dict) or not counts or sum(counts.values()) != shards.total:
            raise WildtrainError(f"{self.root / SHARDS / INDEX}: crops per class do not add up to the shards' "
                                 f"{shards.total} samples; rerun convert (dvc repro convert)")
        self.classes = sorted(counts)
        self.train_split = Split([], [i for i, c in enumerate(self.classes) for _ in range(int(counts[c]))])
        self.rebalanced = False
        return shards

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_weights(self) -> torch.Tensor:
        """Inverse class frequency, mean 1: rare species weigh as much in total as common ones."""
        counts = torch.tensor(self.train_split.counts(self.num_classes), dtype=torch.float32)
        w = counts.sum() / (len(counts) * counts.clamp(min=1))
        return w / w.mean()

    def stats(self) -> dict:
        """Dataset statistics logged as MLflow params."""
        out = {"classes": ",".join(self.classes), "train_images": len(self.train_split.labels),
               "val_images": len(self.val_split.labels)}
        for split, s in (("train", self.train_split), ("val", self.val_split)):
            out.update({f"{split}.{c}": n for c, n in zip(self.classes, s.counts(self.num_classes))})
        return out

    def _loader(self, split: Split, train: bool) -> DataLoader:
        c = self.cfg
        ds = CropDataset(split, transforms(c.imgsz, c.augment if train else None, seed=c.seed))
        sampler = None
        if train and c.imbalance == "sampler":
            w = self.class_weights()[torch.tensor(split.labels)]
            sampler = WeightedRandomSampler(w.double(), num_samples=len(split.labels), replacement=True,
                                            generator=torch.Generator().manual_seed(c.seed))
        return DataLoader(ds, batch_size=c.batch, shuffle=train and sampler is None, sampler=sampler,
                          num_workers=c.workers, persistent_workers=c.workers > 0,
                          worker_init_fn=reseed_worker if c.workers > 0 else None,
                          drop_last=train and len(ds) > c.batch)  # no batch of 1 for BatchNorm

    def _stream_loader(self) -> DataLoader:
        """The training crops read from their shards: each rank and worker its own shards, equal batches per rank."""
        c, t = self.cfg, self.trainer
        ds = ShardStream(self.shards, partial(crop_item, index={name: i for i, name in enumerate(self.classes)}),
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
