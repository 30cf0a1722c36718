"""Stage `convert`: group-aware stratified split -> canonical COCO per split (tiled when asked), the YOLO
layout, ROI crops and the dataset statistics (metrics/data.json + a class-count plot)."""

from __future__ import annotations

import os
from pathlib import Path

from wildtrain.data import stats as data_stats
from wildtrain.data.coco import load_coco
from wildtrain.data.crops import BACKGROUND, image_stem, write_crops
from wildtrain.data.shards import INDEX, write_crop_shards, write_shards
from wildtrain.data.split import split_dataset, unit_key
from wildtrain.data.tiling import tile_dataset
from wildtrain.data.yolo_layout import write_yolo_layout
from wildtrain.io import read_json, replaced_dir, write_json
from wildtrain.layout import ANNOTATIONS, CROPS_INFO, CROPS_UNITS, FULL, IMAGES, MANIFEST, SHARDS, SPLITS, TILES
from wildtrain.params import Params


def convert(p: Params, root: Path) -> dict:
    raw = root / p.paths.raw
    ds = load_coco(raw / ANNOTATIONS)
    manifest = read_json(raw / MANIFEST, "dataset manifest")
    digest = manifest["dataset_hash"]
    c, t = p.convert, p.convert.tile
    splits = split_dataset(ds, c.val_fraction, c.test_fraction, c.seed)
    coco_dir = root / p.paths.coco
    base_info = {"dataset_hash": digest, "split_seed": c.seed,
                 **({"background": ds.info["background"]} if "background" in ds.info else {})}
    train_view = splits
    shards = c.shards or p.data.stream  # data.stream trains from them
    with replaced_dir(coco_dir) as tmp:
        if t.size:
            train_view = {}
            for name in SPLITS:
                full = splits[name]
                full.info = {**base_info, "split": name, "image_root": os.path.relpath(raw / IMAGES, coco_dir / FULL)}
                full.save(tmp / FULL / f"{name}.json")
                tiles = tile_dataset(full, raw / IMAGES, tmp / TILES, name, t.size, t.overlap, t.min_visibility,
                                     t.empty_ratio, c.seed)
                tiles.info = {**base_info, "split": name, "image_root": TILES, "full": f"{FULL}/{name}.json",
                              "tiling": {"size": t.size, "overlap": t.overlap}}
                train_view[name] = tiles
        else:
            for name in SPLITS:
                splits[name].info = {**base_info, "split": name,
                                     "image_root": os.path.relpath(raw / IMAGES, coco_dir)}
        for name in SPLITS:
            train_view[name].save(tmp / f"{name}.json")
        if shards:
            root_of_view = tmp / TILES if t.size else raw / IMAGES
            index = write_shards(train_view["train"], root_of_view, tmp / SHARDS, "train")
            write_json(tmp / SHARDS / INDEX, {"split": "train", "categories": ds.categories, "shards": index})
    view_root = coco_dir / TILES if t.size else raw / IMAGES
    with replaced_dir(root / p.paths.yolo) as tmp:
        write_yolo_layout(train_view, view_root, tmp)
    stats = {"dataset_hash": digest, "data_source_md5": manifest.get("data_source_md5"), "images": len(ds.images),
             "boxes": len(ds.annotations), "classes": ds.class_counts(), **{name: data_stats.split_summary(splits[name]) for name in SPLITS}}
    for name in SPLITS:
        stats[name]["units"] = len({unit_key(im) for im in splits[name].images})
        if shards and name == "train":
            stats[name]["shards"] = len(list((coco_dir / SHARDS).glob("*.tar")))
        if t.size:
            stats[name]["tiles"] = len(train_view[name].images)
            stats[name]["tile_boxes"] = len(train_view[name].annotations)
    stats["box_size"] = data_stats.box_sizes(ds)
    stats["image"] = data_stats.mean_std(splits["train"], raw / IMAGES, c.seed)
    with replaced_dir(root / p.paths.crops) as tmp:
        k = c.crops
        if k.enabled:
            crops = write_crops(splits, raw / IMAGES, tmp, k.padding, k.min_size, k.background_per_image, c.seed)
            write_json(tmp / CROPS_INFO, {"padding": k.padding, "min_size": k.min_size,
                                          "background": BACKGROUND if k.background_per_image else None})
            # image stem -> its split unit: the classifier's bootstrap resamples crops of one image (group) together
            write_json(tmp / CROPS_UNITS, {name: {image_stem(im): unit_key(im) for im in splits[name].images}
                                           for name in SPLITS})
            for name in SPLITS:
                stats[name]["crops"] = crops[name]
            if shards:
                write_json(tmp / SHARDS / INDEX, write_crop_shards(tmp / "train", tmp / SHARDS, "train"))
    write_json(root / p.paths.metrics / "data.json", stats)
    write_json(root / p.paths.plots / "class_counts.json", data_stats.class_count_rows(splits))
    print("convert: " + ", ".join(f"{n} {stats[n]['images']} images/{stats[n]['boxes']} boxes"
                                  + (f" ({stats[n]['tiles']} tiles)" if t.size else "") for n in SPLITS))
    return stats
