"""Tiling and sliced inference: windows cover the image, tiles map back, a box cut by a border is found once."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from wildtrain.data.coco import CocoDataset
from wildtrain.data.tiling import tile_dataset, windows
from wildtrain.evaluate.detection import coco_eval, to_coco_results
from wildtrain.slicing import merge, predict_sliced, slice_size
from wildtrain.contract import Detections


def red_blobs(image: np.ndarray) -> Detections:
    """A real (if simple) detector: connected red regions, scored by size."""
    arr = image.astype(int)
    labels, _ = ndimage.label((arr[..., 0] > 200) & (arr[..., 1] < 60))
    boxes = [[float(s[1].start), float(s[0].start), float(s[1].stop - s[1].start), float(s[0].stop - s[0].start)]
             for s in ndimage.find_objects(labels)]
    return Detections(boxes, [0] * len(boxes), [min(0.99, b[2] * b[3] / 400) for b in boxes])


@pytest.mark.parametrize("w, h, size, overlap", [(200, 100, 100, 0.2), (1000, 700, 256, 0.25), (50, 40, 64, 0.2)])
def test_windows_cover_every_pixel_and_stay_inside(w, h, size, overlap):
    covered = np.zeros((h, w), bool)
    for x1, y1, x2, y2 in windows(w, h, size, overlap):
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h and x2 - x1 <= size and y2 - y1 <= size
        covered[y1:y2, x1:x2] = True
    assert covered.all()


def test_tiles_clip_boxes_by_visibility_and_map_back(tmp_path):
    Image.new("RGB", (200, 100), (60, 90, 60)).save(tmp_path / "big.png")
    ds = CocoDataset([{"id": 1, "file_name": "big.png", "width": 200, "height": 100}],
                     [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [20.0, 30.0, 10.0, 10.0]},
                      {"id": 2, "image_id": 1, "category_id": 1, "bbox": [95.0, 30.0, 20.0, 10.0]}],
                     [{"id": 1, "name": "kob"}])
    tiles = tile_dataset(ds, tmp_path, tmp_path / "t", "train", 100, 0.2, 0.5, 0.0, seed=0)
    by_tile = tiles.annotations_by_image()
    pieces = [(im, a) for im in tiles.images for a in by_tile[im["id"]]]
    for im, a in pieces:
        with Image.open(tmp_path / "t" / im["file_name"]) as t:
            assert t.size == (im["width"], im["height"])
        src = ds.annotations[a["source_annotation"] - 1]["bbox"]
        x, y = a["bbox"][0] + im["offset"][0], a["bbox"][1] + im["offset"][1]
        assert src[0] <= x and x + a["bbox"][2] <= src[0] + src[2] and (y, a["bbox"][3]) == (30.0, 10.0)
    # box 2 (x 95..115): tile 0..100 holds 5/20 (< 0.5, dropped), 80..180 holds it whole, 100..200 holds 15/20
    assert sorted((im["offset"][0], a["source_annotation"], a["bbox"][2]) for im, a in pieces) == [
        (0, 1, 10.0), (80, 2, 20.0), (100, 2, 15.0)]


def test_merge_joins_a_box_split_by_a_tile_border_but_keeps_neighbours():
    merged = merge([[90, 40, 10, 20], [90, 40, 20, 20], [100, 40, 10, 20], [130, 40, 10, 10], [90, 40, 20, 20]],
                   [0, 0, 0, 0, 1], [0.5, 0.9, 0.4, 0.8, 0.3], ios=0.5)
    assert sorted(zip(merged.classes, map(tuple, merged.boxes))) == [
        (0, (90.0, 40.0, 20.0, 20.0)), (0, (130.0, 40.0, 10.0, 10.0)), (1, (90.0, 40.0, 20.0, 20.0))]


def test_sliced_inference_recovers_a_border_crossing_box_once():
    arr = np.full((100, 200, 3), 70, np.uint8)
    arr[40:60, 90:110] = (255, 0, 0)   # crosses the x=100 border between tiles 0..100 and 100..200
    arr[20:30, 20:30] = (255, 0, 0)    # inside the first tile only
    gt = CocoDataset([{"id": 1, "file_name": "survey.png", "width": 200, "height": 100}],
                     [{"id": 1, "image_id": 1, "category_id": 5, "bbox": [90, 40, 20, 20], "area": 400, "iscrowd": 0},
                      {"id": 2, "image_id": 1, "category_id": 5, "bbox": [20, 20, 10, 10], "area": 100, "iscrowd": 0}],
                     [{"id": 5, "name": "kob"}])
    calls = []

    def detect(arrays):
        calls.append(len(arrays))
        return [red_blobs(a) for a in arrays]

    unmerged = predict_sliced(detect, [arr], [100], overlap=0.2, merge_ios=1.01, max_det=100, batch=4)[0]
    assert len(unmerged.boxes) == 4  # the border box is seen whole once and cut twice: 3 pieces + the small one
    (det,) = predict_sliced(detect, [arr], [100], overlap=0.2, merge_ios=0.5, max_det=100, batch=4)
    assert sorted(map(tuple, det.boxes)) == [(20.0, 20.0, 10.0, 10.0), (90.0, 40.0, 20.0, 20.0)]
    ev = coco_eval(gt, to_coco_results(gt, [det]))
    assert ev["map50_95"] == pytest.approx(1.0)


def test_slices_of_several_images_share_batches_and_whole_images_are_not_merged():
    big, small = np.zeros((100, 300, 3), np.uint8), np.zeros((50, 50, 3), np.uint8)
    big[10:20, 250:260] = (255, 0, 0)
    small[5:15, 5:15] = (255, 0, 0)
    calls = []

    def detect(arrays):
        calls.append([a.shape[:2] for a in arrays])
        return [red_blobs(a) for a in arrays]

    out = predict_sliced(detect, [big, small], [100, None], overlap=0.0, merge_ios=0.5, max_det=10, batch=8)
    assert calls == [[(100, 100)] * 3 + [(50, 50)]]  # 3 windows of the big image and the small image, one batch
    assert out[0].boxes == [[250.0, 10.0, 10.0, 10.0]] and out[1].boxes == [[5.0, 5.0, 10.0, 10.0]]


@pytest.mark.parametrize("option, shape, expected", [
    ("auto", (100, 100), None), ("auto", (1000, 900), 320), ("off", (5000, 5000), None), ("640", (700, 500), 640),
    ("640", (600, 500), None)])
def test_slice_size_rules(option, shape, expected):
    assert slice_size(option, shape, 320) == expected


def test_slice_size_refuses_nonsense():
    with pytest.raises(ValueError, match="slice: expected auto, off or a size"):
        slice_size("7", (100, 100), 320)
