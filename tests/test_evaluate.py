"""Our evaluator must equal pycocotools on hand-made cases with known AP."""

import contextlib
import io

import pytest

from wildtrain.data.coco import CocoDataset
from wildtrain.evaluate.detection import BACKGROUND, coco_eval, confusion_pairs, to_coco_results
from wildtrain.contract import Detections

CATS = [{"id": 4, "name": "zebra"}, {"id": 9, "name": "bird"}]


def _gt():
    images = [{"id": 1, "file_name": "a.png", "width": 200, "height": 200},
              {"id": 2, "file_name": "b.png", "width": 200, "height": 200}]
    anns = [{"id": 1, "image_id": 1, "category_id": 4, "bbox": [10, 10, 50, 40], "area": 2000, "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 4, "bbox": [100, 100, 60, 50], "area": 3000, "iscrowd": 0},
            {"id": 3, "image_id": 1, "category_id": 9, "bbox": [120, 20, 40, 40], "area": 1600, "iscrowd": 0}]
    return CocoDataset(images, anns, CATS)


def _pycocotools_stats(ds, results):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO()
    gt.dataset = ds.to_dict()
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def test_perfect_predictions_give_ap_1():
    ds = _gt()
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
               for a in ds.annotations]
    ours = coco_eval(ds, results)
    assert ours["map50_95"] == pytest.approx(1.0) and ours["map50"] == pytest.approx(1.0)
    assert ours["per_class"]["zebra"]["ap50_95"] == pytest.approx(1.0)
    assert ours["map50_95"] == pytest.approx(_pycocotools_stats(ds, results)[0], abs=1e-12)


def test_known_partial_ap():
    # zebra: hit (0.9), false positive (0.8), hit (0.7) -> P/R: (1, .5), (.5, .5), (2/3, 1)
    # 101-point interpolated AP = (51 * 1 + 50 * 2/3) / 101 at every IoU (boxes are exact).
    # bird: one exact hit -> AP 1. mAP = mean of the two.
    ds = _gt()
    results = [
        {"image_id": 1, "category_id": 4, "bbox": [10, 10, 50, 40], "score": 0.9},
        {"image_id": 2, "category_id": 4, "bbox": [0, 150, 20, 20], "score": 0.8},
        {"image_id": 2, "category_id": 4, "bbox": [100, 100, 60, 50], "score": 0.7},
        {"image_id": 1, "category_id": 9, "bbox": [120, 20, 40, 40], "score": 0.95},
    ]
    zebra_ap = (51 + 50 * 2 / 3) / 101
    ours = coco_eval(ds, results)
    assert ours["per_class"]["zebra"]["ap50"] == pytest.approx(zebra_ap, abs=1e-9)
    assert ours["per_class"]["bird"]["ap50"] == pytest.approx(1.0)
    assert ours["map50"] == pytest.approx((zebra_ap + 1) / 2, abs=1e-9)
    stats = _pycocotools_stats(ds, results)
    assert ours["map50_95"] == pytest.approx(stats[0], abs=1e-12)
    assert ours["map50"] == pytest.approx(stats[1], abs=1e-12)
    assert ours["map75"] == pytest.approx(stats[2], abs=1e-12)


def test_adapter_output_maps_class_index_to_category_id_and_no_predictions_is_zero():
    ds = _gt()
    dets = [Detections([[10, 10, 50, 40]], [0], [0.5]), Detections([[1, 2, 3, 4]], [1], [0.4])]
    results = to_coco_results(ds, dets)
    assert [r["category_id"] for r in results] == [4, 9]
    assert coco_eval(ds, [])["map50_95"] == 0.0


def test_confusion_pairs_count_hits_confusions_misses_and_false_positives():
    ds = _gt()
    results = [
        {"image_id": 1, "category_id": 4, "bbox": [10, 10, 50, 40], "score": 0.9},  # zebra -> zebra
        {"image_id": 1, "category_id": 4, "bbox": [120, 20, 40, 40], "score": 0.8},  # bird -> zebra
        {"image_id": 2, "category_id": 9, "bbox": [0, 0, 10, 10], "score": 0.7},  # background -> bird
        {"image_id": 2, "category_id": 9, "bbox": [100, 100, 60, 50], "score": 0.1},  # below conf: ignored
    ]
    rows = confusion_pairs(ds, results, conf=0.25, iou=0.5)
    pairs = sorted((r["actual"], r["predicted"]) for r in rows)
    assert pairs == sorted([("zebra", "zebra"), ("bird", "zebra"), (BACKGROUND, "bird"), ("zebra", BACKGROUND)])
