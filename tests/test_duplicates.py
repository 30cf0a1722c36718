"""Duplicate content: exact twins merged, near-identical images kept in one split, the unannotated policy."""

from __future__ import annotations

import dataclasses
import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from data_fixtures import canonical, scene_array
from wildtrain.data import formats
from wildtrain.data.coco import load_coco
from wildtrain.data.duplicates import MAX_DISTANCE, near_duplicate_links, near_pairs
from wildtrain.data.images import ORIENTATION, content_hashes, orient_box
from wildtrain.data.validate import _group_near_duplicates, near_duplicate_warning, summary_line, validate
from wildtrain.params import Params
from wildtrain.pipeline.convert import convert
from wildtrain.pipeline.prepare import prepare

CATS = [{"id": 1, "name": "zebra"}, {"id": 2, "name": "elephant"}]


def save(path: Path, arr: np.ndarray, mode: str = "RGB", **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, "RGB").convert(mode).save(path, **kw)
    return path


def write_coco(src: Path, boxes: dict[str, list[tuple[int, list[float]]]]) -> None:
    """annotations.json listing the images in `boxes` (file name -> [(category, bbox)]), sizes read from disk."""
    images, anns = [], []
    for k, (name, items) in enumerate(boxes.items(), start=1):
        with Image.open(src / "images" / name) as img:
            images.append({"id": k, "file_name": name, "width": img.width, "height": img.height})
        anns += [{"id": len(anns) + 1 + n, "image_id": k, "category_id": c, "bbox": b}
                 for n, (c, b) in enumerate(items)]
    (src / "annotations.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": CATS}))


def read(src: Path):
    return formats.read(src, "coco", "annotations.json", "images")[0]


def test_exact_twin_without_annotation_file_is_quarantined_not_kept_as_a_negative(tmp_path):
    src, arr = tmp_path / "src", scene_array(64, 48, seed=1)
    save(src / "images/scene.png", arr)
    save(src / "images/scene.tif", arr, mode="RGBA")  # the same scene: other format, other bytes, alpha channel
    save(src / "images/other.png", scene_array(64, 48, seed=2))
    write_coco(src, {"scene.png": [(1, [5, 5, 10, 10]), (2, [20, 20, 8, 8])], "other.png": [(1, [1, 1, 4, 4])]})
    ds, rep = validate(read(src), tmp_path / "out", unannotated="negative")
    assert [im["file_name"] for im in ds.images] == ["other.png", "scene.png"]
    assert rep["quarantined"] == [{"file": "scene.tif", "reason": "duplicate_content",
                                   "detail": "same decoded pixels as scene.png, which is kept"}]
    assert rep["images"]["in"] == 3 == rep["images"]["kept"] + rep["images"]["quarantined"]
    assert rep["images"]["without_annotation_file"] == 1 and rep["images"]["negatives"] == 0
    assert rep["boxes"] == {"in": 3, "kept": 3, "unchanged": 3, "clipped": 0, "merged_from_duplicates": 0, "dropped": 0}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["other.png", "scene.png"]
    _, rep = validate(read(src), tmp_path / "out2")  # default data.unannotated: skip, before any decoding
    assert rep["quarantined_by_reason"] == {"unannotated": 1} and rep["images"]["kept"] == 2
    assert "1 without an annotation file (data.unannotated: skip)" in summary_line(rep)


def test_annotated_twins_are_merged_and_repeated_boxes_dropped(tmp_path):
    src = tmp_path / "src"
    for name, seed in (("a.png", 1), ("b.tif", 1), ("c.png", 2), ("d.png", 2), ("e.png", 3), ("f.png", 4),
                       ("g.png", 4)):
        save(src / "images" / name, scene_array(64, 48, seed=seed))
    write_coco(src, {
        "a.png": [(1, [10, 10, 20, 20]),    # repeats b's zebra (IoU 0.95): dropped as duplicate_box
                  (2, [40, 5, 10, 10]),     # where b has a zebra, but an elephant: merged
                  (1, [50, 30, 60, 10])],   # outside the image: clipped, then merged
        "b.tif": [(1, [10.5, 10, 20, 20]), (1, [40, 5, 10, 10]), (2, [5, 30, 12, 12]), (2, [30, 30, 5, 5])],
        "c.png": [(1, [1, 1, 8, 8])],       # c's box repeats one of d's (d has more boxes: kept)
        "d.png": [(1, [1, 1, 8, 8.2]), (1, [1, 1, 8, 8.1])],
        "e.png": [],
        "f.png": [(1, [1, 1, 8, 8])],       # f and g: one box each, the first file name is kept
        "g.png": [(1, [30, 20, 8, 8])]})
    ds, rep = validate(read(src), tmp_path / "out")
    assert [im["file_name"] for im in ds.images] == ["b.tif", "d.png", "e.png", "f.png"]
    detail = "same decoded pixels as {}, which is kept (its {} box(es) are merged into it, repeats dropped)"
    assert {q["file"]: (q["reason"], q["detail"]) for q in rep["quarantined"]} == {
        "a.png": ("duplicate_content", detail.format("b.tif", 3)),
        "c.png": ("duplicate_content", detail.format("d.png", 1)),
        "g.png": ("duplicate_content", detail.format("f.png", 1))}
    assert (rep["images"]["in"], rep["images"]["kept"], rep["images"]["quarantined"]) == (7, 4, 3)
    assert rep["boxes"] == {"in": 12, "kept": 10, "unchanged": 9, "clipped": 1, "merged_from_duplicates": 3,
                            "dropped": 2}
    assert [(d["file"], d["reason"]) for d in rep["dropped"]] == [("a.png", "duplicate_box"),
                                                                  ("c.png", "duplicate_box")]
    assert "IoU 0.95" in rep["dropped"][0]["detail"] and rep["clipped"][0]["file"] == "a.png"
    by_image = ds.annotations_by_image()
    assert sorted((a["category_id"], a["bbox"]) for a in by_image[1]) == sorted([
        (1, [10.5, 10.0, 20.0, 20.0]), (1, [40.0, 5.0, 10.0, 10.0]), (2, [5.0, 30.0, 12.0, 12.0]),
        (2, [30.0, 30.0, 5.0, 5.0]), (2, [40.0, 5.0, 10.0, 10.0]), (1, [50.0, 30.0, 14.0, 10.0])])
    assert len(by_image[2]) == 2 and by_image[3] == [] and len(by_image[4]) == 2
    assert "3 merged from duplicate images" in summary_line(rep)


def test_a_twin_stored_rotated_has_its_boxes_moved_to_the_displayed_frame(tmp_path):
    """a.png is stored sideways with EXIF orientation 6 and annotated on its stored frame; b.png is upright."""
    src = tmp_path / "src"
    stored = Image.fromarray(scene_array(60, 40, seed=4))
    exif = stored.getexif()
    exif[ORIENTATION] = 6
    (src / "images").mkdir(parents=True)
    stored.save(src / "images/a.png", exif=exif.tobytes())
    with Image.open(src / "images/a.png") as img:
        Image.fromarray(np.asarray(ImageOps.exif_transpose(img))).save(src / "images/b.png")
    write_coco(src, {"a.png": [(1, [5, 10, 8, 6])], "b.png": [(2, [1, 1, 5, 5]), (2, [20, 30, 5, 5])]})
    coco = json.loads((src / "annotations.json").read_text())
    coco["images"][0].update(width=60, height=40)  # a.png's annotation was drawn on the stored frame
    (src / "annotations.json").write_text(json.dumps(coco))
    ds, rep = validate(read(src), tmp_path / "out")
    assert [im["file_name"] for im in ds.images] == ["b.png"] and rep["quarantined"][0]["file"] == "a.png"
    assert [a["bbox"] for a in ds.annotations][-1] == pytest.approx(orient_box([5, 10, 8, 6], 6, 60, 40))


def test_jpeg_copy_is_flagged_near_duplicate_and_lands_in_the_same_split(tmp_path, capsys):
    src = tmp_path / "src"
    names = {}
    for k in range(12):
        save(src / "images" / f"s{k:02d}.png", scene_array(200, 150, seed=10 + k))
        names[f"s{k:02d}.png"] = [(1 + k % 2, [20, 20, 30, 30])]
    with Image.open(src / "images/s03.png") as img:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=75)  # a re-encode: other pixels, same scene
    (src / "images/s03_copy.jpg").write_bytes(buf.getvalue())
    names["s03_copy.jpg"] = [(2, [20, 20, 30, 30])]
    write_coco(src, names)
    ds, rep = validate(read(src), tmp_path / "out")
    (pair,) = rep["near_duplicates"]["pairs"]
    assert pair["files"] == ["s03.png", "s03_copy.jpg"] and pair["group"] == "near-duplicates:s03.png"
    assert pair["boxes"] == [1, 1]
    assert 0 < pair["distance"] <= MAX_DISTANCE == rep["near_duplicates"]["max_distance"]
    assert rep["images"]["near_duplicates"] == 2 and rep["images"]["kept"] == 13
    assert near_duplicate_warning(rep).startswith("2 near-identical images in 1 group(s) (1 pair(s) within 4 of 64")
    p = Params()
    p = dataclasses.replace(p, data=dataclasses.replace(p.data, source=str(src)),
                            convert=dataclasses.replace(p.convert, val_fraction=0.3, test_fraction=0.3,
                                                        crops=dataclasses.replace(p.convert.crops, enabled=False)))
    root = tmp_path / "repo"
    for seed in range(4):  # whatever the split seed, original and copy share a split
        prepare(dataclasses.replace(p, convert=dataclasses.replace(p.convert, seed=seed)), root)
        assert "prepare: warning: 2 near-identical images in 1 group(s)" in capsys.readouterr().out
        convert(dataclasses.replace(p, convert=dataclasses.replace(p.convert, seed=seed)), root)
        where = {im["file_name"]: split for split in ("train", "val", "test")
                 for im in load_coco(root / "data/coco" / f"{split}.json").images}
        assert len(where) == 13 and where["s03.png"] == where["s03_copy.jpg"]


def test_near_duplicates_join_or_merge_groups():
    rng = np.random.default_rng(3)
    x, y, z, w = (int(v) for v in rng.integers(0, 2**63, 4))
    images = [{"file_name": "a.jpg", "group": "f1"}, {"file_name": "b.jpg"},        # b ~ a: b joins f1
              {"file_name": "c.jpg", "group": "f2"}, {"file_name": "d.jpg", "group": "f2"},
              {"file_name": "e.jpg"}, {"file_name": "f.jpg"},                         # e = f: a new group
              {"file_name": "g.jpg", "group": "f3"}, {"file_name": "h.jpg"}]          # g ~ c: f2 and f3 merge
    hashes = [x, x ^ 1, y, z, w, w, y ^ 0b11, None]
    pairs = _group_near_duplicates(images, hashes)
    assert [im.get("group") for im in images] == ["f1", "f1", "f2+f3", "f2+f3", "near-duplicates:e.jpg",
                                                  "near-duplicates:e.jpg", "f2+f3", None]
    assert [(p["files"], p["distance"]) for p in pairs] == [(["a.jpg", "b.jpg"], 1), (["c.jpg", "g.jpg"], 2),
                                                            (["e.jpg", "f.jpg"], 0)]


def test_featureless_images_get_no_perceptual_hash():
    assert content_hashes(Image.new("RGB", (80, 60), (10, 20, 30)))[1] is None
    assert content_hashes(Image.new("RGB", (80, 60), (200, 20, 30)))[1] is None
    assert content_hashes(Image.fromarray(scene_array(80, 60)))[1] is not None


def test_near_pair_search_matches_brute_force_and_scales_to_50k_hashes():
    rng = np.random.default_rng(0)
    h = rng.integers(0, 2**64 - 1, 1500, dtype=np.uint64, endpoint=True)
    h[300:700] &= np.uint64(0xFFFF_FFFF_0000_0000)  # many hashes sharing blocks: the hard case for the index
    for k in range(0, 200, 2):
        for bit in rng.choice(64, size=int(rng.integers(0, 7)), replace=False):
            h[k + 1] = h[k] ^ (np.uint64(1) << np.uint64(int(bit)))
    dist = np.bitwise_count(h[:, None] ^ h[None, :])
    iu = np.triu_indices(len(h), 1)
    close = dist[iu] <= MAX_DISTANCE
    i, j, d = near_pairs(h)
    assert set(zip(i.tolist(), j.tolist())) == set(zip(iu[0][close].tolist(), iu[1][close].tolist()))
    assert (d == dist[i, j]).all()

    h = rng.integers(0, 2**64 - 1, 50_000, dtype=np.uint64, endpoint=True)
    planted = set()
    for k in range(100):
        flips = rng.choice(64, size=k % (MAX_DISTANCE + 1), replace=False)
        h[25_000 + k] = h[k] ^ np.uint64(sum(1 << int(b) for b in flips))
        planted.add((k, 25_000 + k))
    start = time.perf_counter()
    links = near_duplicate_links(h.tolist())
    took = time.perf_counter() - start
    assert {(a, b) for a, b, _ in links} == planted  # random 64-bit hashes are ~32 bits apart
    assert took < 3.0, f"{took:.2f} s for 50k hashes"


@pytest.mark.parametrize("policy", ["negative", "skip"])
@pytest.mark.parametrize("fmt", tuple(formats.WRITERS))  # label_studio is read only
def test_unannotated_policy_is_the_same_for_every_format(tmp_path, fmt, policy):
    """Each format's explicit negative (COCO entry, VOC XML, empty YOLO .txt, CSV empty row, all-background mask)
    is kept either way; an image no annotation file mentions (for image/mask pairs: no mask) follows
    data.unannotated."""
    ds = canonical(tmp_path / "imgs")
    formats.write(ds, tmp_path / "imgs", tmp_path / "src", fmt)
    image_dir = "JPEGImages" if fmt == "voc" else "images"
    save(tmp_path / "src" / image_dir / "extra.png", scene_array(30, 20, seed=9))
    raw, _ = formats.read(tmp_path / "src", fmt, "", "images")
    clean, rep = validate(raw, tmp_path / "out", unannotated=policy)
    assert rep["images"]["without_annotation_file"] == 1 and rep["unannotated"] == policy
    names = sorted(Path(im["file_name"]).name for im in clean.images)
    if policy == "negative":
        assert len(names) == 4 and "extra.png" in names and rep["images"]["negatives"] == 2
        assert rep["images"]["quarantined"] == 0
    else:
        assert len(names) == 3 and "extra.png" not in names and rep["images"]["negatives"] == 1
        why = ("missing_mask", "no mask file with its name in the mask folder") if fmt == "masks" else \
            ("unannotated", "no annotation file mentions it")
        assert rep["quarantined"] == [{"file": "extra.png", "reason": why[0],
                                       "detail": f"{why[1]} (data.unannotated: skip)"}]
    assert f"1 without an annotation file (data.unannotated: {policy})" in summary_line(rep)


def test_equal_fingerprints_are_confirmed_on_every_pixel(tmp_path):
    """Two images that differ in one pixel off the sampled rows share a fingerprint but are not twins."""
    src, arr = tmp_path / "src", scene_array(640, 480, seed=5)
    save(src / "images/a.png", arr)
    arr = arr.copy()
    arr[1, 1, 0] ^= 1  # neither in the 16 rows nor in the 256x256 point sample (rows 0, 2, 4, ... of 480)
    save(src / "images/b.png", arr)
    write_coco(src, {"a.png": [(1, [5, 5, 10, 10])], "b.png": [(1, [5, 5, 10, 10])]})
    with Image.open(src / "images/a.png") as a, Image.open(src / "images/b.png") as b:
        assert content_hashes(a)[0] == content_hashes(b)[0]
    ds, rep = validate(read(src), tmp_path / "out")
    assert len(ds.images) == 2 and rep["images"]["quarantined"] == 0
    assert rep["near_duplicates"]["pairs"][0]["distance"] == 0  # same scene to the eye: kept in one split
