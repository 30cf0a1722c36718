"""Masks in the data contract: COCO polygons and RLE, image/mask folder pairs (class list, ignore value), their
quarantine cases with reconciling counts, EXIF orientation, tiling, writers, the polygon round trip, and the
synthetic generator's masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_fixtures import scene_array
from wildtrain.data import formats, masks, synthetic
from wildtrain.data.coco import CocoDataset
from wildtrain.data.tiling import tile_dataset
from wildtrain.data.validate import validate
from wildtrain.errors import WildtrainError

IGNORE = masks.IGNORE


def class_maps(ds: CocoDataset) -> dict[str, np.ndarray]:
    by_image = ds.annotations_by_image()
    return {im["file_name"]: masks.class_map(im, by_image[im["id"]], ds.category_ids) for im in ds.images}


def write_pairs(root: Path, maps: dict[str, np.ndarray], names=("background", "water", "reeds")) -> Path:
    """images/<name>.png (a scene) + masks/<name>.png (the class map) + classes.txt."""
    for k, (name, m) in enumerate(maps.items()):
        (root / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(scene_array(m.shape[1], m.shape[0], seed=k)).save(root / "images" / name)
        (root / "masks" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(m.astype(np.uint8)).save((root / "masks" / name).with_suffix(".png"))
    (root / "classes.txt").write_text("\n".join(names) + "\n")
    return root


def read_clean(folder: Path, out: Path, fmt: str = "auto", policy: str = "clip"):
    if fmt == "auto":
        fmt, _ = formats.detect(folder, "annotations.json")
    raw, _ = formats.read(folder, fmt, "annotations.json", "images")
    return validate(raw, out, policy, workers=1)


def lake(h: int = 40, w: int = 60) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[5:20, 10:40] = 1  # water
    m[25:35, 0:15] = 2  # reeds
    m[0:3, 50:60] = IGNORE  # unlabelled
    return m


@pytest.mark.parametrize("shape", ["rectangle", "rotated_rectangle", "hexagon", "ellipse"])
def test_polygon_to_mask_to_polygon_stays_within_one_pixel(shape):
    t = np.linspace(0, 2 * np.pi, {"hexagon": 7, "ellipse": 25}.get(shape, 5))[:-1]
    if shape == "rectangle":
        pts = np.array([[10.0, 12.0], [47.5, 12.0], [47.5, 30.25], [10.0, 30.25]])
    elif shape == "rotated_rectangle":
        a = np.deg2rad(27)
        corners = np.array([[-18, -7], [18, -7], [18, 7], [-18, 7]], float)
        pts = corners @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) + [40, 30]
    else:
        pts = np.c_[40 + 22 * np.cos(t), 30 + 14 * np.sin(t)]
    poly = [pts.ravel().tolist()]
    mask = masks.decode(poly, 64, 80)
    back = masks.polygons(mask)
    assert len(back) == 1 and mask.sum() > 100

    def outline(p):
        q = np.asarray(p).reshape(-1, 2)
        return np.concatenate([q[i] + (q[(i + 1) % len(q)] - q[i]) * np.linspace(0, 1, 50)[:, None]
                               for i in range(len(q))])

    a, b = outline(poly[0]), outline(back[0])
    dist = np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))
    assert max(dist.min(1).max(), dist.min(0).max()) <= 1.0  # symmetric Hausdorff distance, px
    assert (masks.decode(back, 64, 80) ^ mask).sum() <= 0.05 * mask.sum()  # and it rasterizes to the same pixels


def test_coco_polygons_and_rle_read_to_the_same_class_map_and_bad_ones_are_dropped(tmp_path):
    src = tmp_path / "src"
    Image.fromarray(scene_array(60, 40)).save((src / "images").mkdir(parents=True) or src / "images" / "a.png")
    square = np.zeros((40, 60), bool)
    square[10:20, 5:25] = True
    rle = masks.encode(square)
    counts = []  # the same square as uncompressed RLE (column-major runs)
    flat = square.T.ravel()
    value, run = False, 0
    for px in flat:
        if px != value:
            counts.append(run)
            value, run = px, 0
        run += 1
    counts.append(run)
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 10, 20, 10],
             "segmentation": [[5, 10, 25, 10, 25, 20, 5, 20]]},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [5, 10, 20, 10], "segmentation": rle},
            {"id": 3, "image_id": 1, "category_id": 2, "bbox": [5, 10, 20, 10], "iscrowd": 1,
             "segmentation": {"size": [40, 60], "counts": counts}},
            {"id": 4, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5],
             "segmentation": masks.encode(square[:30])},  # a valid RLE of another frame (60x30)
            {"id": 5, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "segmentation": [[1, 2, 3]]},
            {"id": 6, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "segmentation": []}]
    (src / "annotations.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": 60, "height": 40}], "annotations": anns,
        "categories": [{"id": 1, "name": "hut"}, {"id": 2, "name": "pond"}]}))
    ds, rep = read_clean(src, tmp_path / "out")
    assert rep["boxes"]["in"] == 6 == rep["boxes"]["kept"] + rep["boxes"]["dropped"]
    assert rep["dropped_by_reason"] == {"bad_mask": 1, "mask_size": 1}
    assert rep["masks"]["annotations_with_mask"] == 3  # the box-only one (segmentation []) is kept as a box
    kept = {a["id"]: a for a in ds.annotations}
    for a in kept.values():
        if masks.has_mask(a) and masks.is_rle(a["segmentation"]):
            assert isinstance(a["segmentation"]["counts"], str)  # compressed, JSON-ready
    decoded = [masks.decode(a["segmentation"], 40, 60) for a in ds.annotations if masks.has_mask(a)]
    assert all((d == square).all() for d in decoded)  # polygon, compressed and uncompressed RLE: same pixels


def test_image_mask_pairs_read_with_class_list_ignore_and_every_quarantine_case(tmp_path):
    src = write_pairs(tmp_path / "src", {"ok.png": lake(), "sub/ok2.png": lake()[::-1].copy(),
                                        "outside.png": np.full((40, 60), 7, np.uint8),
                                        "resized.png": lake(), "broken.png": lake(), "rgb.png": lake(),
                                        "nomask.png": lake()})
    Image.fromarray(lake()[:30]).save(src / "masks" / "resized.png")  # 60x30 for a 60x40 image
    (src / "masks" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    Image.fromarray(np.stack([lake()] * 3, -1)).save(src / "masks" / "rgb.png")
    (src / "masks" / "nomask.png").unlink()
    Image.fromarray(lake()).save(src / "masks" / "orphan.png")  # a mask without an image: listed, not an error
    fmt, why = formats.detect(src, "annotations.json")
    assert fmt == "masks" and "classes.txt" in why
    ds, rep = read_clean(src, tmp_path / "out")
    assert rep["images"]["in"] == 7 == rep["images"]["kept"] + rep["images"]["quarantined"]
    assert rep["quarantined_by_reason"] == {"mask_size": 1, "mask_values": 1, "missing_mask": 1, "unreadable_mask": 2}
    assert not (tmp_path / "out" / "outside.png").exists()  # a quarantined image is not written
    assert ds.class_names == ["water", "reeds"] and ds.info["background"] == "background"
    assert rep["masks"]["regions_from_mask_files"] == 4 == rep["boxes"]["in"]  # 2 classes x 2 kept images
    assert rep["masks"]["masks_without_image"] == ["masks/orphan.png"] and rep["masks"]["images_with_ignore"] == 2
    got = class_maps(ds)
    assert (got["ok.png"] == lake()).all() and (got["sub/ok2.png"] == lake()[::-1]).all()
    assert all(a["iscrowd"] == 1 for a in ds.annotations)  # a class's region, not an object
    box = next(a["bbox"] for a in ds.annotations if a["image_id"] == 1 and a["category_id"] == 1)
    assert box == [10.0, 5.0, 30.0, 15.0]


def test_pairs_refuse_a_bad_class_list_or_an_ignore_value_that_is_a_class(tmp_path):
    src = write_pairs(tmp_path / "src", {"a.png": lake()})
    (src / "classes.txt").write_text("background\n")
    with pytest.raises(WildtrainError, match="needs the background .* and at least one class"):
        formats.read(src, "masks", "", "images")
    (src / "classes.txt").write_text("background\nwater\nwater\n")
    with pytest.raises(WildtrainError, match="'water' is listed twice"):
        formats.read(src, "masks", "", "images")
    (src / "classes.txt").write_text("background\nwater\nreeds\n")
    with pytest.raises(WildtrainError, match="data.masks.ignore: 1 is the value of class 'water'"):
        formats.read(src, "masks", "", "images", {"ignore": 1})


def test_exif_rotated_images_turn_their_masks_with_them(tmp_path):
    """Stored 60x40 with orientation 6 (displayed 40x60): a mask drawn on the stored frame is turned like the
    image; one drawn on the displayed frame is kept; an RLE says its frame by its size."""
    stored = scene_array(60, 40)
    stored[5:15, 40:55] = (255, 0, 0)  # a red patch on the stored frame
    truth = np.zeros((40, 60), np.uint8)
    truth[5:15, 40:55] = 1
    exif = Image.Exif()
    exif[0x0112] = 6
    src = tmp_path / "pairs"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    Image.fromarray(stored).save(src / "images" / "stored.jpg", exif=exif, quality=98)
    other = scene_array(60, 40, seed=5)
    other[5:15, 40:55] = (255, 0, 0)
    Image.fromarray(other).save(src / "images" / "shown.jpg", exif=exif, quality=98)  # another scene, same patch
    Image.fromarray(truth).save(src / "masks" / "stored.png")
    displayed_truth = masks.orient_array(truth, 6)
    Image.fromarray(displayed_truth).save(src / "masks" / "shown.png")
    (src / "classes.txt").write_text("background\nroof\n")
    ds, rep = read_clean(src, tmp_path / "out")
    assert rep["images"]["exif_rotated"] == 2 and rep["images"]["quarantined"] == 0
    got = class_maps(ds)
    assert (got["stored.jpg"] == displayed_truth).all() and (got["shown.jpg"] == displayed_truth).all()
    shown = np.asarray(Image.open(tmp_path / "out" / "stored.jpg").convert("RGB")).astype(int)
    red = (shown[..., 0] > 180) & (shown[..., 1] < 80) & (shown[..., 2] < 80)
    assert (red == (displayed_truth == 1)).mean() > 0.98  # turned as the image was: it covers the red patch

    coco = tmp_path / "coco"
    (coco / "images").mkdir(parents=True)
    Image.fromarray(stored).save(coco / "images" / "a.jpg", exif=exif, quality=98)
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [40, 5, 15, 10],
             "segmentation": masks.encode(truth == 1)},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [40, 5, 15, 10],
             "segmentation": [[40, 5, 55, 5, 55, 15, 40, 15]]}]
    (coco / "annotations.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 60, "height": 40}], "annotations": anns,
        "categories": [{"id": 1, "name": "roof"}]}))
    ds, rep = read_clean(coco, tmp_path / "out2")
    assert rep["boxes"]["kept"] == 2
    for a in ds.annotations:
        assert (masks.decode(a["segmentation"], 60, 40) == (displayed_truth == 1)).mean() > 0.99


def test_tiles_cut_masks_like_images_keep_regions_and_ignore_objects_they_drop(tmp_path):
    full = np.zeros((100, 120), np.uint8)
    full[:, :] = 1  # a region covering everything (iscrowd)
    obj = np.zeros((100, 120), bool)
    obj[40:60, 45:75] = True  # an object 30 px wide that tiles of 64 cut
    Image.fromarray(scene_array(120, 100)).save(tmp_path / "a.png")
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 120, 100], "area": 12000, "iscrowd": 1,
             "segmentation": masks.encode(full == 1)},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [45, 40, 30, 20], "area": 600, "iscrowd": 0,
             "segmentation": masks.encode(obj)}]
    ignore = np.zeros((100, 120), bool)
    ignore[0:5, 0:5] = True
    ds = CocoDataset([{"id": 1, "file_name": "a.png", "width": 120, "height": 100,
                       "ignore_mask": masks.encode(ignore)}], anns, [{"id": 1, "name": "grass"}, {"id": 2, "name": "hut"}])
    whole = class_maps(ds)["a.png"]
    tiles = tile_dataset(ds, tmp_path, tmp_path / "tiles", "train", 64, 0.25, 0.7, 1.0, 0)
    by_image = tiles.annotations_by_image()
    assert len(tiles.images) == 6  # x at 0, 48, 56; y at 0, 36
    kept_hut = []
    for t in tiles.images:
        x, y = t["offset"]
        got = masks.class_map(t, by_image[t["id"]], tiles.category_ids)
        expected = whole[y:y + t["height"], x:x + t["width"]]
        crowd = [a for a in by_image[t["id"]] if a["iscrowd"]]
        assert len(crowd) == 1  # the region is in every tile, whatever min_visibility says
        huts = [a for a in by_image[t["id"]] if not a["iscrowd"]]
        kept_hut.append(bool(huts))
        if huts:  # kept: its mask is the cut of the whole one
            assert (got == expected).all()
        else:  # too little of the hut inside: no box, and its pixels are ignored rather than called grass
            assert ((got == expected) | ((got == IGNORE) & (expected == 2))).all()
            assert (got == IGNORE).sum() >= (expected == 2).sum()
        tile_png = np.asarray(Image.open(tmp_path / "tiles" / t["file_name"]))
        assert tile_png.shape[:2] == got.shape
    assert kept_hut == [False, True, False] * 2  # 63% of the hut in the x=0 and x=56 tiles: under 0.7
    assert (masks.class_map(tiles.images[0], by_image[1], tiles.category_ids)[0:5, 0:5] == IGNORE).all()


def test_writers_round_trip_pairs_through_coco_and_back(tmp_path):
    src = write_pairs(tmp_path / "src", {"ok.png": lake(), "sub/b.png": lake()[::-1].copy()})
    first, _ = read_clean(src, tmp_path / "img1")
    formats.write(first, tmp_path / "img1", tmp_path / "coco", "coco")
    via_coco, _ = read_clean(tmp_path / "coco", tmp_path / "img2", "coco")
    formats.write(via_coco, tmp_path / "img2", tmp_path / "pairs", "masks")
    assert (tmp_path / "pairs" / "classes.txt").read_text() == "background\nwater\nreeds\n"
    back, _ = read_clean(tmp_path / "pairs", tmp_path / "img3", "masks")
    for maps in (class_maps(via_coco), class_maps(back)):
        assert (maps["ok.png"] == lake()).all() and (maps["sub/b.png"] == lake()[::-1]).all()
    written = np.asarray(Image.open(tmp_path / "pairs" / "masks" / "ok.png"))
    assert (written == lake()).all()  # pixel values are the class indices, 255 ignored


def test_polygon_datasets_write_to_pairs(tmp_path):
    poly = [[10, 8, 40, 8, 40, 30, 10, 30]]
    Image.fromarray(scene_array(50, 40)).save((tmp_path / "src").mkdir() or tmp_path / "src" / "a.png")
    ds = CocoDataset([{"id": 1, "file_name": "a.png", "width": 50, "height": 40}],
                     [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 8, 30, 22], "segmentation": poly}],
                     [{"id": 3, "name": "tank"}])
    formats.write(ds, tmp_path / "src", tmp_path / "pairs", "masks")
    written = np.asarray(Image.open(tmp_path / "pairs" / "masks" / "a.png"))
    assert (written == masks.decode(poly, 40, 50)).all()  # value 1: the first (only) class


def test_synthetic_scenes_have_exact_deterministic_masks(tmp_path):
    a = synthetic.generate(tmp_path / "a", 4, 96, 4, 0.0, seed=3)
    b = synthetic.generate(tmp_path / "b", 4, 96, 4, 0.0, seed=3)
    assert [x["segmentation"] for x in a.annotations] == [x["segmentation"] for x in b.annotations]
    for ann in a.annotations:
        m = masks.decode(ann["segmentation"], 96, 96)
        assert masks.bbox(m) == ann["bbox"]  # the box is the mask's extent
        assert m.sum() >= 0.3 * ann["bbox"][2] * ann["bbox"][3]  # an animal's body fills much of its box
    maps = class_maps(a)
    assert all(set(np.unique(m)) <= {0, 1, 2, 3, 4} for m in maps.values())
