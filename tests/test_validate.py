"""Validation: a corrupted corpus with every quirk gives a report whose counts are exact and reconcile."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import pipeline_env
from data_fixtures import noise_image
from test_errors import assert_one_line_error
from wildtrain.data import formats
from wildtrain.data.images import ORIENTATION, orient_box
from wildtrain.data.validate import validate
from wildtrain.errors import WildtrainError


def corrupted_corpus(root: Path) -> Path:
    img = root / "images"
    noise_image(img / "good.png", 64, 48)
    noise_image(img / "rgba.png", 32, 32, seed=1, mode="RGBA")
    Image.fromarray(np.full((20, 30), 40000, np.uint16)).save(img / "gray16.png")
    noise_image(img / "pal.png", 16, 16, seed=2, mode="P")
    noise_image(img / "unlisted.png", 16, 16, seed=3)
    noise_image(img / "full.jpg", 64, 64, seed=4)
    (img / "truncated.jpg").write_bytes((img / "full.jpg").read_bytes()[:300])
    (img / "full.jpg").unlink()
    (img / "garbage.png").write_bytes(b"this is not a png")
    images = [(1, "good.png", 64, 48), (2, "rgba.png", 32, 32), (3, "gray16.png", 30, 20), (4, "pal.png", 16, 16),
              (5, "truncated.jpg", 64, 64), (6, "garbage.png", 10, 10), (7, "missing.png", 10, 10),
              (8, "good.png", 64, 48)]  # 8: same file name as 1
    boxes = [(1, 1, [2, 2, 10, 10]),           # kept
             (1, 1, [58, 40, 10, 10]),         # partly outside -> clipped to [58, 40, 6, 8]
             (1, 1, [float("nan"), 1, 2, 2]),  # non_finite (json writes NaN)
             (1, 1, [5, 5, 0, 4]),             # non_positive_size
             (1, 99, [5, 5, 4, 4]),            # unknown_class
             (1, 1, [100, 100, 5, 5]),         # outside_image (nothing left after clipping)
             (2, 1, [1, 1, 5, 5]), (3, 2, [1, 1, 5, 5]),        # kept on converted images
             (5, 1, [1, 1, 5, 5]), (7, 1, [1, 1, 5, 5]), (8, 1, [1, 1, 5, 5]),  # image_quarantined
             (999, 1, [1, 1, 5, 5])]           # unknown_image
    coco = {"images": [{"id": i, "file_name": f, "width": w, "height": h} for i, f, w, h in images],
            "annotations": [{"id": k + 1, "image_id": i, "category_id": c, "bbox": b} for k, (i, c, b) in enumerate(boxes)],
            "categories": [{"id": 1, "name": "kob"}, {"id": 2, "name": "topi"}]}
    (root / "annotations.json").write_text(json.dumps(coco))
    return root


def test_corrupted_corpus_report_counts_are_exact(tmp_path):
    raw, _ = formats.read(corrupted_corpus(tmp_path / "src"), "coco", "annotations.json", "images")
    ds, rep = validate(raw, tmp_path / "out", "clip", unannotated="negative")
    assert rep["images"] == {"in": 9, "kept": 5, "quarantined": 4, "negatives": 2, "without_annotation_file": 1,
                             "normalized_to_rgb": 3, "exif_rotated": 0, "with_group": 0, "near_duplicates": 0}
    assert rep["quarantined_by_reason"] == {"duplicate_file_name": 1, "missing_file": 1, "unreadable": 2}
    assert rep["boxes"] == {"in": 12, "kept": 4, "unchanged": 3, "clipped": 1, "merged_from_duplicates": 0,
                            "dropped": 8}
    assert rep["dropped_by_reason"] == {"image_quarantined": 3, "non_finite": 1, "non_positive_size": 1,
                                        "outside_image": 1, "unknown_class": 1, "unknown_image": 1}
    assert rep["clipped"][0]["after"] == [58.0, 40.0, 6.0, 8.0]
    assert sorted(im["file_name"] for im in ds.images) == ["good.png", "gray16.png", "pal.png", "rgba.png", "unlisted.png"]
    assert len(ds.annotations) == 4
    for im in ds.images:
        with Image.open(tmp_path / "out" / im["file_name"]) as img:
            assert img.mode == "RGB" and img.size == (im["width"], im["height"])
    with Image.open(tmp_path / "out" / "gray16.png") as img:
        assert img.getpixel((0, 0)) == (156, 156, 156)  # 40000/65535 of full scale, not clipped to 255
    assert (tmp_path / "out/good.png").read_bytes() == (tmp_path / "src/images/good.png").read_bytes()


def test_drop_policy_drops_instead_of_clipping_and_fail_names_the_box(tmp_path):
    raw, _ = formats.read(corrupted_corpus(tmp_path / "src"), "coco", "annotations.json", "images")
    _, rep = validate(raw, tmp_path / "out", "drop")
    assert rep["boxes"] == {"in": 12, "kept": 3, "unchanged": 3, "clipped": 0, "merged_from_duplicates": 0,
                            "dropped": 9}
    with pytest.raises(WildtrainError, match=r"good.png: annotation \d+ .*data.invalid_boxes: fail"):
        validate(raw, tmp_path / "out2", "fail", where="annotations.json")


def test_prepare_fail_policy_is_one_line_and_clip_writes_the_report(repo_copy):
    corrupted_corpus(repo_copy / "survey")
    params = repo_copy / "params.yaml"
    text = params.read_text().replace("source: synthetic", "source: survey")
    params.write_text(text.replace("invalid_boxes: clip", "invalid_boxes: fail"))
    env = pipeline_env(repo_copy)
    proc = subprocess.run(["python", "stages/prepare.py"], cwd=repo_copy, env=env, capture_output=True, text=True)
    assert_one_line_error(proc, "annotations.json", "good.png", "data.invalid_boxes: fail")
    assert not (repo_copy / "data/raw").exists()
    params.write_text(text)
    proc = subprocess.run(["python", "stages/prepare.py"], cwd=repo_copy, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "format coco (found annotations.json)" in proc.stdout or "format coco (data.annotations" in proc.stdout
    assert ("images 9 in = 4 kept (1 without boxes) + 5 quarantined (1 duplicate_file_name, 1 missing_file, "
            "1 unannotated, 2 unreadable); 1 without an annotation file (data.unannotated: skip)") in proc.stdout
    report = json.loads((repo_copy / "data/reports/validation.json").read_text())
    assert report["boxes"]["in"] == report["boxes"]["kept"] + report["boxes"]["dropped"] == 12


@pytest.mark.parametrize("declared", ["stored", "displayed"])
def test_exif_orientation_is_applied_and_boxes_follow(tmp_path, declared):
    """A 60x40 photo stored sideways (orientation 6 = shown rotated 90 deg clockwise) with a red patch."""
    arr = np.full((40, 60, 3), 90, np.uint8)
    arr[10:16, 5:13] = (255, 0, 0)  # stored frame: box [5, 10, 8, 6]
    img = Image.fromarray(arr, "RGB")
    exif = img.getexif()
    exif[ORIENTATION] = 6
    (tmp_path / "src").mkdir()
    img.save(tmp_path / "src/photo.png", exif=exif.tobytes())
    stored_box = [5, 10, 8, 6]
    shown_box = orient_box(stored_box, 6, 60, 40)
    box, size = (stored_box, (60, 40)) if declared == "stored" else (shown_box, (40, 60))
    (tmp_path / "src/annotations.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "photo.png", "width": size[0], "height": size[1]}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": box}], "categories": [{"id": 1, "name": "kob"}]}))
    raw, _ = formats.read(tmp_path / "src", "coco", "annotations.json", "images")
    ds, rep = validate(raw, tmp_path / "out", "fail")
    assert rep["images"]["exif_rotated"] == 1
    out = np.asarray(Image.open(tmp_path / "out/photo.png"))
    assert out.shape[:2] == (60, 40) and (ds.images[0]["width"], ds.images[0]["height"]) == (40, 60)
    x, y, w, h = (int(round(v)) for v in ds.annotations[0]["bbox"])
    assert (w, h) == (6, 8) and (out[y:y + h, x:x + w] == (255, 0, 0)).all()
    assert (out == (255, 0, 0)).all(axis=2).sum() == 48  # the patch is exactly where the box says, nowhere else


@pytest.mark.parametrize("files, needle", [
    ({"annotations.json": "{not json"}, "annotations.json: unreadable COCO annotation file"),
    ({"annotations.json": '{"images": [], "annotations": [], "categories": []}'}, "no classes"),
    ({"annotations.json": '{"images": [], "annotations": [], "categories": [{"id": 1, "name": "kob"}]}'},
     "annotations.json: no usable images"),
    ({"boxes.csv": "image_path,x,y,label\n"}, "no annotations found"),
    ({"data.yaml": "names: {0: a, 2: b}\n"}, "data.yaml: 'names' keys must be 0..1"),
])
def test_fatal_source_problems_are_one_line_naming_the_file(tmp_path, files, needle):
    import dataclasses

    from wildtrain.params import Data
    from wildtrain.pipeline.prepare import read_source

    for name, text in files.items():
        (tmp_path / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / name).write_text(text)
    fmt = "yolo" if "data.yaml" in files else "auto"
    with pytest.raises(WildtrainError) as e:
        read_source(dataclasses.replace(Data(), source=str(tmp_path / "src"), format=fmt), tmp_path, tmp_path / "out")
    assert needle in str(e.value) and "\n" not in str(e.value)
