"""prepare + convert on a user's VOC archive: groups from file names, tiling, stats, report; and the sliced evaluate."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml

from conftest import pipeline_env
from data_fixtures import noise_image
from wildtrain.data import formats
from wildtrain.data.coco import CocoDataset, load_coco
from wildtrain.params import Params
from wildtrain.layout import image_root
from wildtrain.pipeline.convert import convert
from wildtrain.pipeline.prepare import prepare


def survey(root: Path, flights: int = 6, per_flight: int = 3) -> CocoDataset:
    """Images named <flight>_<n>.jpg, 300x200, two classes, boxes anywhere (some across tile borders)."""
    images, anns = [], []
    for f in range(flights):
        for n in range(per_flight):
            i = len(images) + 1
            name = f"F{f:02d}_{n}.jpg"
            noise_image(root / name, 300, 200, seed=i)
            images.append({"id": i, "file_name": name, "width": 300, "height": 200})
            for k in range(3):
                anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1 + (i + k) % 2,
                             "bbox": [20.0 + 90 * k, 30.0 + 40 * (n % 3), 30.0, 24.0]})
    return CocoDataset(images, anns, [{"id": 1, "name": "kob"}, {"id": 2, "name": "waterbuck"}])


def test_voc_archive_with_groups_and_tiles(tmp_path):
    ds = survey(tmp_path / "imgs")
    formats.write(ds, tmp_path / "imgs", tmp_path / "voc", "voc")
    with zipfile.ZipFile(tmp_path / "survey.zip", "w") as zf:
        for p in sorted((tmp_path / "voc").rglob("*")):
            zf.write(p, p.relative_to(tmp_path / "voc"))
    root = tmp_path / "repo"
    p = Params()
    p = dataclasses.replace(p, data=dataclasses.replace(p.data, source=str(tmp_path / "survey.zip"), group_regex=r"^(F\d+)_"),
                            convert=dataclasses.replace(p.convert, val_fraction=0.2, test_fraction=0.2, shards=True,
                                                        tile=dataclasses.replace(p.convert.tile, size=160, empty_ratio=0.0)))
    report = prepare(p, root)
    assert report["format"] == "voc" and report["images"]["with_group"] == 18
    assert json.loads((root / "data/reports/validation.json").read_text())["boxes"]["kept"] == 54
    stats = convert(p, root)
    groups = {}
    for split in ("train", "val", "test"):
        tiles = load_coco(root / "data/coco" / f"{split}.json")
        full = load_coco(root / "data/coco/full" / f"{split}.json")
        assert tiles.info["tiling"] == {"size": 160, "overlap": 0.2} and stats[split]["tiles"] == len(tiles.images)
        assert {t["source_file"] for t in tiles.images} <= {im["file_name"] for im in full.images}
        for im in full.images:
            assert groups.setdefault(im["group"], split) == split  # a flight never spans two splits
        assert (image_root(root / "data/coco/full" / f"{split}.json", full.info) / full.images[0]["file_name"]).is_file()
        assert (root / "data/coco/tiles" / tiles.images[0]["file_name"]).is_file()
        assert len(list((root / "data/yolo/labels" / split).glob("*.txt"))) == len(tiles.images)
    shards = json.loads((root / "data/coco/shards/index.json").read_text())
    assert stats["train"]["shards"] == len(shards["shards"]) and sum(x["samples"] for x in shards["shards"]) == \
        stats["train"]["tiles"]
    assert stats["images"] == 18 and stats["boxes"] == 54 == sum(stats[s]["boxes"] for s in ("train", "val", "test"))
    assert stats["box_size"]["count"] == 54 and len(stats["image"]["mean"]) == 3
    rows = json.loads((root / "metrics/plots/class_counts.json").read_text())
    assert rows == [{"class": "kob", "count": 27}, {"class": "waterbuck", "count": 27}]


@pytest.mark.slow
def test_tiled_training_is_evaluated_by_sliced_inference(repo_copy):
    """The real stages: train YOLO on tiles for one epoch, evaluate slices the full test images."""
    env = pipeline_env(repo_copy)
    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    params["data"]["synthetic"].update(num_images=10, image_size=256, max_objects=6)
    params["convert"]["tile"].update(size=128)
    params["convert"]["crops"]["enabled"] = False
    params["train"].update(epochs=1, imgsz=128, batch=8, workers=0, close_mosaic=0)
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for stage in ("prepare", "convert", "train", "evaluate"):
        proc = subprocess.run(["python", f"stages/{stage}.py", "detector"][:3 if stage in ("train", "evaluate") else 2],
                              cwd=repo_copy, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    ev = json.loads((repo_copy / "metrics/eval.json").read_text())
    test_full = load_coco(repo_copy / "data/coco/full/test.json")
    assert ev["sliced"] is True and ev["images"] == len(test_full.images) < len(load_coco(repo_copy / "data/coco/test.json").images)
    preds = json.loads((repo_copy / "data/predictions/test.json").read_text())
    full_ids = {im["id"] for im in test_full.images}
    assert all(r["image_id"] in full_ids and r["bbox"][0] + r["bbox"][2] <= 256.5 for r in preds)
    card = json.loads((repo_copy / "models/model.json").read_text())
    assert card["input"]["tiling"] == {"size": 128, "overlap": 0.2} and card["input"]["image_size"] == 128


def test_webdataset_shards_round_trip_to_the_same_samples(tmp_path):
    import webdataset as wds

    from wildtrain.data import synthetic
    from wildtrain.data.shards import write_shards

    ds = synthetic.generate(tmp_path / "raw", num_images=7, image_size=64, max_objects=3, empty_fraction=0.2, seed=4)
    index = write_shards(ds, tmp_path / "raw/images", tmp_path / "shards", "train", shard_size=3)
    assert [s["samples"] for s in index] == [3, 3, 1]
    urls = [str(tmp_path / "shards" / s["file"]) for s in index]
    samples = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))
    by_image = ds.annotations_by_image()
    assert [s["__key__"] for s in samples] == [f"{im['id']:08d}" for im in ds.images]
    for s, im in zip(samples, ds.images):
        assert s["png"] == (tmp_path / "raw/images" / im["file_name"]).read_bytes()
        assert json.loads(s["json"]) == {"image": im, "annotations": by_image[im["id"]]}
    again = write_shards(ds, tmp_path / "raw/images", tmp_path / "shards2", "train", shard_size=3)
    assert all((tmp_path / "shards" / a["file"]).read_bytes() == (tmp_path / "shards2" / b["file"]).read_bytes()
               for a, b in zip(index, again))  # byte-identical: DVC caches them once
