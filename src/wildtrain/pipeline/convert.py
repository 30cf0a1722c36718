"""Stage `convert`: deterministic train/val/test split -> canonical COCO per split + the YOLO layout."""

from __future__ import annotations

import os
from pathlib import Path

from wildtrain.data.coco import CocoDataset, load_coco
from wildtrain.data.crops import write_crops
from wildtrain.data.split import SPLITS, split_dataset
from wildtrain.data.yolo_layout import write_yolo_layout
from wildtrain.io import read_json, replaced_dir, write_json
from wildtrain.params import Params
from wildtrain.pipeline.prepare import ANNOTATIONS, IMAGES, MANIFEST


def image_root(coco_file: Path, ds: CocoDataset) -> Path:
    """Images of a canonical COCO file live at info.image_root, relative to the file itself."""
    return (coco_file.parent / ds.info.get("image_root", ".")).resolve()


def split_stats(ds: CocoDataset) -> dict:
    with_boxes = {a["image_id"] for a in ds.annotations}
    return {"images": len(ds.images), "boxes": len(ds.annotations),
            "empty_images": len(ds.images) - len(with_boxes), "classes": ds.class_counts()}


def convert(p: Params, root: Path) -> dict:
    raw = root / p.paths.raw
    ds = load_coco(raw / ANNOTATIONS)
    digest = read_json(raw / MANIFEST, "dataset manifest")["dataset_hash"]
    c = p.convert
    splits = split_dataset(ds, c.val_fraction, c.test_fraction, c.seed)
    coco_dir = root / p.paths.coco
    with replaced_dir(coco_dir) as tmp:
        rel_images = os.path.relpath(raw / IMAGES, coco_dir)
        for name in SPLITS:
            sub = splits[name]
            sub.info = {"split": name, "dataset_hash": digest, "split_seed": c.seed, "image_root": rel_images}
            sub.save(tmp / f"{name}.json")
    with replaced_dir(root / p.paths.yolo) as tmp:
        write_yolo_layout(splits, raw / IMAGES, tmp)
    stats = {"dataset_hash": digest, **{name: split_stats(splits[name]) for name in SPLITS}}
    with replaced_dir(root / p.paths.crops) as tmp:
        k = c.crops
        if k.enabled:
            crops = write_crops(splits, raw / IMAGES, tmp, k.padding, k.min_size, k.background_per_image, c.seed)
            for name in SPLITS:
                stats[name]["crops"] = crops[name]
    write_json(root / p.paths.metrics / "split.json", stats)
    print("convert: " + ", ".join(f"{n} {stats[n]['images']} images/{stats[n]['boxes']} boxes" for n in SPLITS))
    return stats
