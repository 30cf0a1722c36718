"""Streaming from WebDataset shards (data.stream): each DataLoader worker and each DDP rank reads its own shards,
every sample once per epoch when the shards divide evenly, equal batches per rank always, one line for a bad
shard, and the classifier trained end to end from shards."""

from __future__ import annotations

import json
from collections import Counter
from functools import partial
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from classifier_data import SMALL, tiny_params, write_crops
from wildtrain.data.shards import INDEX, write_crop_shards
from wildtrain.data.stream import ShardStream, read_index, slot_shards, worker_batches
from wildtrain.errors import WildtrainError


def where(sample: dict, transform):
    """What a test needs to know of an item: its shard, its crop, the worker that read it."""
    info = torch.utils.data.get_worker_info()
    return sample["__url__"], json.loads(sample["json"])["file"], info.id if info else 0


def shards(tmp_path: Path, counts: dict[str, int], shard_size: int):
    crops = write_crops(tmp_path, {"train": counts}, size=8)
    index = write_crop_shards(crops / "train", crops / "shards", "train", shard_size=shard_size)
    (crops / "shards" / INDEX).write_text(json.dumps(index))
    return read_index(crops / "shards", "test")


def epoch(s, rank: int, world: int, workers: int, batch: int, ds=None):
    ds = ds or ShardStream(s, where, None, batch=batch, buffer=5, seed=0, rank=rank, world=world)
    loader = DataLoader(ds, batch_size=batch, num_workers=workers, drop_last=True, collate_fn=lambda b: b)
    return list(loader), len(loader)


def test_workers_and_ranks_read_distinct_shards_and_every_sample_once(tmp_path):
    s = shards(tmp_path, {"a": 16, "b": 16}, shard_size=4)  # 8 shards of 4; 2 ranks x 2 workers: 2 shards a slot
    assert len(s.files) == 8 and s.total == 32
    readers: dict[str, set] = {}
    seen = Counter()
    for rank in (0, 1):
        batches, length = epoch(s, rank, world=2, workers=2, batch=4)
        assert len(batches) == length == 4  # 16 samples a rank, in 4 full batches
        for url, file, worker in (item for b in batches for item in b):
            readers.setdefault(url, set()).add((rank, worker))
            seen[file] += 1
    assert len(readers) == 8 and all(len(r) == 1 for r in readers.values())  # one reader per shard
    assert len({r for rs in readers.values() for r in rs}) == 4  # and every slot read some
    assert len(seen) == 32 and set(seen.values()) == {1}  # every crop once


def test_each_epoch_permutes_shards_and_order_but_still_covers_all(tmp_path):
    s = shards(tmp_path, {"a": 12, "b": 12}, shard_size=3)  # 8 shards, one reader
    ds = ShardStream(s, where, None, batch=4, buffer=6, seed=0)
    first = [f for _, f, _ in ds]
    second = [f for _, f, _ in ds]  # a persistent worker's copy counts its own epochs
    assert sorted(first) == sorted(second) and len(set(first)) == 24
    assert first != second
    again = [f for _, f, _ in ShardStream(s, where, None, batch=4, buffer=6, seed=0)]
    assert again == first  # same seed, same epoch: same order


@pytest.mark.parametrize("world,workers,batch", [(2, 2, 4), (3, 1, 5), (2, 3, 2), (4, 2, 3)])
def test_ranks_yield_equal_batch_counts_with_uneven_shards(tmp_path, world, workers, batch):
    s = shards(tmp_path, {"a": 17, "b": 14}, shard_size=4)  # 31 crops: 7 shards of 4 and one of 3
    counts = []
    for rank in range(world):
        batches, length = epoch(s, rank, world, workers, batch)
        assert all(len(b) == batch for b in batches)
        counts.append(len(batches))
        assert len(batches) == length  # what Lightning is told is what it gets
    assert len(set(counts)) == 1 and counts[0] == 31 // world // batch


def test_fewer_shards_than_readers_split_samples_instead(tmp_path):
    s = shards(tmp_path, {"a": 8, "b": 8}, shard_size=100)  # one shard, 2 ranks x 2 workers
    seen = Counter()
    for rank in (0, 1):
        batches, _ = epoch(s, rank, world=2, workers=2, batch=4)
        seen.update(f for b in batches for _, f, _ in b)
    assert len(seen) == 16 and set(seen.values()) == {1}


def test_slot_assignment_is_a_partition():
    for n, slots in ((8, 4), (7, 3), (10, 4)):
        dealt = [i for slot in range(slots) for i in slot_shards(n, slot, slots, seed=3, epoch=5)]
        assert sorted(dealt) == list(range(n))
    assert sum(worker_batches(100, 4, 2, 3, w) for w in range(3)) == 100 // 2 // 4


@pytest.mark.parametrize("damage", ["image bytes", "member header", "truncated"])
def test_a_damaged_shard_is_one_line_naming_it(tmp_path, damage):
    s = shards(tmp_path, {"a": 8, "b": 8}, shard_size=4)
    bad = s.files[2]
    data = bytearray(bad.read_bytes())
    if damage == "image bytes":
        data[512 + 100:512 + 300] = b"\xff" * 200  # the first member's PNG: not a PNG any more
    elif damage == "member header":
        data[2048:2560] = b"garbage!" * 64  # the second sample's header: tarfile would just stop there
    else:
        data = data[:1500]
    bad.write_bytes(bytes(data))
    for workers in (0, 1):  # in the main process, and raised in a DataLoader worker
        with pytest.raises(WildtrainError) as e:
            epoch(s, 0, world=1, workers=workers, batch=4,
                  ds=ShardStream(s, decode_crop, None, batch=4, buffer=2, seed=0))
        assert str(e.value).startswith(str(bad)) and "\n" not in str(e.value) and "Traceback" not in str(e.value)


def test_shards_read_as_webdataset_reads_them(tmp_path):
    """Our reader groups members as WebDataset does: the shards stay readable by any WebDataset loader."""
    import webdataset as wds

    from wildtrain.data.stream import shard_samples

    s = shards(tmp_path, {"a": 5, "b": 4}, shard_size=4)
    ours = [x for f, n in zip(s.files, s.counts) for x in shard_samples(f, n)]
    theirs = list(wds.WebDataset([str(f) for f in s.files], shardshuffle=False, empty_check=False))
    assert [(x["__key__"], x["png"], x["json"]) for x in ours] == [(x["__key__"], x["png"], x["json"]) for x in theirs]


def decode_crop(sample: dict, transform):
    from wildtrain.data.stream import decode_rgb, image_bytes

    return decode_rgb(image_bytes(sample)[1]).shape


def test_missing_or_stale_shards_are_one_line(tmp_path):
    with pytest.raises(WildtrainError, match="no shard index"):
        read_index(tmp_path, "dvc repro convert")
    s = shards(tmp_path, {"a": 8, "b": 8}, shard_size=4)
    s.files[1].unlink()
    with pytest.raises(WildtrainError, match="train-000001.tar: shard listed in .* is missing"):
        read_index(s.files[0].parent, "dvc repro convert")


@pytest.mark.slow
def test_classifier_trains_from_shards_and_evaluates(tmp_path, monkeypatch):
    import yaml

    from wildtrain import params
    from wildtrain.pipeline.evaluate import evaluate
    from wildtrain.pipeline.train import train

    crops = write_crops(tmp_path, SMALL)
    cfg = yaml.safe_load(tiny_params(tmp_path, epochs=1, workers=1).read_text())
    cfg["classifier_evaluate"].update(explain=0, bootstrap={"resamples": 100})  # the model evaluates; quickly
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**cfg, "data": {"stream": True, "stream_buffer": 8}}))
    p = params.load(tmp_path / "params.yaml")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WildtrainError, match="no shard index"):  # it really reads shards, not the files
        train(p, tmp_path, "classifier")
    index = write_crop_shards(crops / "train", crops / "shards", "train", shard_size=10)  # 36 crops: 4 shards
    (crops / "shards" / INDEX).write_text(json.dumps(index))
    card = train(p, tmp_path, "classifier")
    assert card["training"]["epochs_completed"] == 1 and card["class_names"] == ["antelope", "bird", "zebra"]
    ev = evaluate(p, tmp_path, "classifier")
    assert ev["crops"] == 12 and 0 <= ev["f1_macro"] <= 1 and np_sum(ev["confusion"]) == 12


def np_sum(rows) -> int:
    return sum(sum(r) for r in rows)


def test_a_streamed_crop_is_the_file_loaders_crop(tmp_path):
    """Same bytes, same decoding, same transform: only the order differs from the file loader."""
    from wildtrain.families.classifier.data import CropDataset, scan_classes, scan_split, transforms
    from wildtrain.families.classifier.datamodule import crop_item

    s = shards(tmp_path, {"a": 5, "b": 4}, shard_size=4)
    train = tmp_path / "data/crops/train"
    classes = scan_classes(train)
    split = scan_split(train, classes, require_all=True)
    files = CropDataset(split, transforms(32))
    by_file = {f.relative_to(train).as_posix(): files[i] for i, f in enumerate(split.files)}
    to_item = partial(crop_item, index={c: i for i, c in enumerate(classes)})
    streamed = list(ShardStream(s, lambda sample, t: (json.loads(sample["json"])["file"], to_item(sample, t)),
                                transforms(32), batch=1, buffer=3, seed=0))
    assert len(streamed) == 9
    for name, (image, label) in streamed:
        assert label == by_file[name][1] and torch.equal(image, by_file[name][0])


def test_a_streamed_image_and_mask_are_the_segmenters_files(tmp_path):
    from wildtrain.data import synthetic
    from wildtrain.data.shards import write_shards
    from wildtrain.families.segmenter.data import MaskDataset, Split, transforms
    from wildtrain.families.segmenter.datamodule import mask_item

    ds = synthetic.generate(tmp_path / "raw", num_images=5, image_size=64, max_objects=3, empty_fraction=0.2, seed=1)
    ds.info = {"image_root": "raw/images"}
    ds.save(tmp_path / "train.json")
    index = write_shards(ds, tmp_path / "raw/images", tmp_path / "shards", "train", shard_size=2)
    (tmp_path / "shards" / INDEX).write_text(json.dumps({"shards": index}))
    split = Split(tmp_path / "train.json", "boxes")
    files = MaskDataset(split, transforms(64))
    by_id = {im["id"]: files[i] for i, im in enumerate(split.images)}
    to_item = partial(mask_item, category_ids=split.category_ids, missing="boxes")
    streamed = list(ShardStream(read_index(tmp_path / "shards", "test"),
                                lambda sample, t: (json.loads(sample["json"])["image"]["id"], to_item(sample, t)),
                                transforms(64), batch=1, buffer=2, seed=0))
    assert sorted(i for i, _ in streamed) == sorted(by_id) and split.with_mask > 0
    for i, (image, mask) in streamed:
        assert torch.equal(image, by_id[i][0]) and torch.equal(mask, by_id[i][1])


@pytest.mark.slow
def test_ddp_ranks_read_disjoint_shards_and_step_together(tmp_path):
    """Two CPU processes (gloo) through the CLI: each rank reads its own shards and takes as many steps (a rank
    with fewer would leave the other waiting in its all-reduce: the run would hang, not pass)."""
    import os
    import subprocess
    import sys

    import yaml

    from conftest import REPO, pipeline_env

    crops = write_crops(tmp_path, SMALL)  # 36 training crops
    index = write_crop_shards(crops / "train", crops / "shards", "train", shard_size=9)  # 4 shards
    (crops / "shards" / INDEX).write_text(json.dumps(index))
    cfg = yaml.safe_load(tiny_params(tmp_path, epochs=1, batch=4, devices=2, strategy="ddp").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**cfg, "data": {"stream": True, "stream_buffer": 4}}))
    log = tmp_path / "shards_log"
    log.mkdir()
    env = {**pipeline_env(REPO), "SHARD_LOG": str(log), "YOLO_CONFIG_DIR": str(tmp_path / ".ultralytics")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(Path(__file__).parent)])
    proc = subprocess.run([sys.executable, str(Path(__file__).parent / "ddp_stream.py"), "train", "classifier"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    ranks = [json.loads((log / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["steps"] == 36 // 2 // 4 for r in ranks)  # 18 crops a rank: 4 full batches each
    assert ranks[0]["shards"] and ranks[1]["shards"] and not set(ranks[0]["shards"]) & set(ranks[1]["shards"])
    assert sorted(ranks[0]["shards"] + ranks[1]["shards"]) == sorted(s["file"] for s in index["shards"])


def test_convert_writes_the_shards_both_families_stream_from(tmp_path):
    """data.stream alone (convert.shards off) makes convert write the crop and image shards; the real datamodules
    read them: the classifier's classes and counts from the index, the segmenter's images with their masks."""
    import dataclasses

    from wildtrain.families.classifier.datamodule import CropDataModule
    from wildtrain.families.segmenter.datamodule import MaskDataModule
    from wildtrain.params import Params
    from wildtrain.pipeline.convert import convert
    from wildtrain.pipeline.prepare import prepare

    p = Params()
    p = dataclasses.replace(p, data=dataclasses.replace(
        p.data, stream=True, synthetic=dataclasses.replace(p.data.synthetic, num_images=30, image_size=96)),
        convert=dataclasses.replace(p.convert, val_fraction=0.3, test_fraction=0.2))  # every class in val
    assert p.convert.shards is False
    prepare(p, tmp_path)
    stats = convert(p, tmp_path)
    crops = json.loads((tmp_path / "data/crops/shards" / INDEX).read_text())
    assert sum(crops["counts"].values()) == sum(stats["train"]["crops"].values()) == \
        sum(s["samples"] for s in crops["shards"])
    coco = {s: tmp_path / "data/coco" / f"{s}.json" for s in ("train", "val", "test")}

    cfg = dataclasses.replace(p.classifier, workers=0, batch=4, imgsz=32)
    dm = CropDataModule(tmp_path / "data/crops", cfg, stream=True)
    assert dm.classes == sorted(crops["counts"]) and dm.stats()["train_images"] == sum(crops["counts"].values())
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 32) and y.max() < dm.num_classes

    seg = MaskDataModule(coco, dataclasses.replace(p.segmenter, workers=0, batch=2, imgsz=64), stream=True)
    batches = list(seg.train_dataloader())
    assert len(batches) == stats["train"]["images"] // 2
    image, mask = batches[0]
    assert image.shape == (2, 3, 64, 64) and mask.shape == (2, 64, 64) and mask.dtype == torch.long

    (tmp_path / "data/coco/shards/train-000000.tar").unlink()
    with pytest.raises(WildtrainError, match="train-000000.tar: shard listed in .* is missing"):
        MaskDataModule(coco, p.segmenter, stream=True)
