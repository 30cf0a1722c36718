"""Bootstrap intervals: the vectorised COCO mAP equals pycocotools on the test set and on explicit resamples, the
counting error is what was hand-counted, and the confusion-matrix tables equal torchmetrics / the segmenter scores."""

from __future__ import annotations

import numpy as np
import pytest

from test_evaluate import _pycocotools_stats as pycocotools_stats  # plain pycocotools, no wildtrain code between
from wildtrain.data.coco import CocoDataset
from wildtrain.evaluate import bootstrap
from wildtrain.evaluate.detection import coco_eval, run_cocoeval
from wildtrain.evaluate.detection_table import DetectionTable

CATS = [{"id": 3, "name": "zebra"}, {"id": 7, "name": "bird"}, {"id": 11, "name": "elephant"},
        {"id": 12, "name": "rhino"}]  # rhino: never in the truth, only predicted


def unit(im: dict) -> str:
    return f"image:{im['file_name']}"


def synthetic(seed: int = 0, images: int = 14) -> tuple[CocoDataset, list[dict]]:
    """Several classes, crowd regions, images without ground truth, false positives, near misses and boxes of
    every size; scores are distinct (no ties), so any resample has one right answer."""
    rng = np.random.default_rng(seed)
    ims, anns, results = [], [], []
    for i in range(1, images + 1):
        ims.append({"id": 100 + i, "file_name": f"im{i}.png", "width": 400, "height": 400})
        if i % 5 == 0:  # no ground truth here; maybe a false positive
            results.append({"image_id": 100 + i, "category_id": 7, "bbox": [5.0, 5.0, 30.0, 30.0],
                            "score": float(rng.uniform(0.01, 0.99))})
            continue
        for _ in range(int(rng.integers(1, 6))):
            cat = int(rng.choice([3, 7, 11]))
            w, h = (float(v) for v in rng.uniform(8, 140, 2))
            x, y = (float(v) for v in rng.uniform(0, 250, 2))
            crowd = int(rng.random() < 0.08)
            anns.append({"id": len(anns) + 1, "image_id": 100 + i, "category_id": cat, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": crowd})
            for _ in range(int(rng.integers(0, 3))):  # jittered detections: hits and near misses
                j = rng.normal(0, 0.12, 4) * [w, h, w, h]
                label = cat if rng.random() < 0.85 else int(rng.choice([3, 7, 11, 12]))
                results.append({"image_id": 100 + i, "category_id": label,
                                "bbox": [x + j[0], y + j[1], max(2.0, w + j[2]), max(2.0, h + j[3])],
                                "score": float(rng.uniform(0.01, 0.99))})
        for _ in range(int(rng.integers(0, 3))):  # background false positives
            results.append({"image_id": 100 + i, "category_id": int(rng.choice([3, 7, 11, 12])),
                            "bbox": [float(v) for v in [*rng.uniform(0, 300, 2), *rng.uniform(5, 60, 2)]],
                            "score": float(rng.uniform(0.01, 0.99))})
    return CocoDataset(ims, anns, CATS), results


def table_of(ds: CocoDataset, results: list[dict], count_conf: float = 0.5) -> DetectionTable:
    return DetectionTable.build(ds, results, run_cocoeval(ds, results), count_conf, unit)


def resampled(ds: CocoDataset, results: list[dict], draws: list[int]) -> tuple[CocoDataset, list[dict]]:
    """The dataset of a resample written out: each drawn image again under a new id, its boxes with it."""
    ims, anns, res = [], [], []
    by_pos = sorted(ds.images, key=lambda im: im["id"])
    for n, pos in enumerate(draws):
        im = by_pos[pos]
        new = 1000 + n
        ims.append({**im, "id": new})
        for a in ds.annotations:
            if a["image_id"] == im["id"]:
                anns.append({**a, "id": len(anns) + 1, "image_id": new})
        res += [{**r, "image_id": new} for r in results if r["image_id"] == im["id"]]
    return CocoDataset(ims, anns, ds.categories), res


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_table_gives_pycocotools_map_on_the_test_set(seed):
    ds, results = synthetic(seed)
    assert any(a["iscrowd"] for a in ds.annotations) and any(r["category_id"] == 12 for r in results)
    table = table_of(ds, results)
    ours = bootstrap.identity(table)
    stats = pycocotools_stats(ds, results)
    assert ours["map50_95"] == pytest.approx(stats[0], abs=1e-9)
    assert ours["map50"] == pytest.approx(stats[1], abs=1e-9)
    assert ours["map75"] == pytest.approx(stats[2], abs=1e-9)
    assert ours["mar_100"] == pytest.approx(stats[8], abs=1e-9)
    per_class = coco_eval(ds, results)["per_class"]
    for name in ("zebra", "bird", "elephant"):
        assert ours[f"per_class.{name}.ap50"] == pytest.approx(per_class[name]["ap50"], abs=1e-9)
        assert ours[f"per_class.{name}.ap50_95"] == pytest.approx(per_class[name]["ap50_95"], abs=1e-9)
    assert np.isnan(ours["per_class.rhino.ap50"]) and per_class["rhino"]["ap50"] is None


@pytest.mark.parametrize("seed", [0, 3])
def test_any_resample_equals_pycocotools_on_that_resample_written_out(seed):
    """Duplicated images keep their own ids; an image drawn 0 times is gone, with its ground truth."""
    ds, results = synthetic(seed)
    table = table_of(ds, results)
    rng = np.random.default_rng(seed)
    for _ in range(4):
        draws = rng.integers(0, len(ds.images), len(ds.images)).tolist()
        w = np.bincount(draws, minlength=len(ds.images))[None].astype(np.int32)
        # the table's units are sorted file names; images are in id order (im1..im14 -> ids 101..114)
        order = [table.units.index(unit(im)) for im in sorted(ds.images, key=lambda im: im["id"])]
        w_units = np.zeros_like(w)
        w_units[:, order] = w
        ours = {k: float(v[0]) for k, v in table.scores(w_units).items()}
        stats = pycocotools_stats(*resampled(ds, results, sorted(draws)))
        assert ours["map50_95"] == pytest.approx(max(stats[0], 0.0), abs=1e-9)
        assert ours["map50"] == pytest.approx(max(stats[1], 0.0), abs=1e-9)
        assert ours["mar_100"] == pytest.approx(max(stats[8], 0.0), abs=1e-9)


def test_counting_error_is_what_was_counted_by_hand():
    """Two images. a: 2 zebras + 1 bird true; predicted (>= 0.5) 3 zebras, 0 birds. b: 1 bird true, 1 bird
    predicted, and one box under the confidence. Per image errors (pred - true), all animals: a +0, b 0 ->
    MAE 0; zebra: a +1, b 0 -> MAE 0.5, RMSE sqrt(1/2); bird: a -1, b 0 -> MAE 0.5."""
    cats = [{"id": 1, "name": "zebra"}, {"id": 2, "name": "bird"}]
    ims = [{"id": 1, "file_name": "a.png", "width": 100, "height": 100},
           {"id": 2, "file_name": "b.png", "width": 100, "height": 100}]
    box = [10.0, 10.0, 20.0, 20.0]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": box, "area": 400, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [50, 50, 20, 20], "area": 400, "iscrowd": 0},
            {"id": 3, "image_id": 1, "category_id": 2, "bbox": [70, 10, 10, 10], "area": 100, "iscrowd": 0},
            {"id": 4, "image_id": 1, "category_id": 2, "bbox": [0, 80, 20, 20], "area": 400, "iscrowd": 1},
            {"id": 5, "image_id": 2, "category_id": 2, "bbox": box, "area": 400, "iscrowd": 0}]
    res = [{"image_id": 1, "category_id": 1, "bbox": box, "score": 0.9},
           {"image_id": 1, "category_id": 1, "bbox": [50, 50, 20, 20], "score": 0.8},
           {"image_id": 1, "category_id": 1, "bbox": [30, 70, 20, 20], "score": 0.7},
           {"image_id": 2, "category_id": 2, "bbox": box, "score": 0.6},
           {"image_id": 2, "category_id": 1, "bbox": [60, 60, 9, 9], "score": 0.3}]
    ds = CocoDataset(ims, anns, cats)
    got = bootstrap.identity(table_of(ds, res, count_conf=0.5))
    assert got["count_mae"] == 0.0 and got["count_rmse"] == 0.0 and got["count_bias"] == 0.0
    assert got["per_class.zebra.count_mae"] == 0.5 and got["per_class.zebra.count_rmse"] == pytest.approx(0.5 ** 0.5)
    assert got["per_class.bird.count_mae"] == 0.5
    # image a drawn twice, b not: zebra errors +1, +1 -> MAE 1; all animals 0
    t = table_of(ds, res, count_conf=0.5)
    w = np.zeros((1, 2), np.int32)
    w[0, t.units.index("image:a.png")] = 2
    s = t.scores(w)
    assert s["per_class.zebra.count_mae"][0] == 1.0 and s["count_mae"][0] == 0.0


def test_weights_are_seeded_and_draw_every_unit_count():
    w = bootstrap.weights(30, 200, seed=5)
    assert w.shape == (200, 30) and (w.sum(1) == 30).all()
    assert (w == bootstrap.weights(30, 200, seed=5)).all() and not (w == bootstrap.weights(30, 200, seed=6)).all()


def test_intervals_cover_the_point_and_narrow_with_more_units():
    ds, results = synthetic(0, images=12)
    small = bootstrap.intervals(table_of(ds, results), 400, 0)
    ds2, results2 = synthetic(0, images=60)
    large = bootstrap.intervals(table_of(ds2, results2), 400, 0)
    point = bootstrap.identity(table_of(ds, results))
    for k in ("map50", "map50_95", "count_mae"):
        low, high = small[k]
        assert low <= point[k] <= high
        assert large[k][1] - large[k][0] < high - low


def test_paired_difference_of_a_model_with_itself_is_exactly_zero_and_a_better_one_wins():
    ds, results = synthetic(1, images=40)
    same = table_of(ds, results)
    assert bootstrap.paired(same, table_of(ds, results), "map50", 300, 0) == (0.0, [0.0, 0.0])
    # a better model: every true box found exactly, at a high score, on top of the same detections
    better = results + [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                         "score": 0.995} for a in ds.annotations if not a["iscrowd"]]
    delta, (low, high) = bootstrap.paired(table_of(ds, better), same, "map50", 300, 0)
    assert delta > 0 and 0 < low <= delta <= high


def test_a_table_survives_save_and_load(tmp_path):
    ds, results = synthetic(2)
    table = table_of(ds, results)
    bootstrap.save(tmp_path / "t.npz", table, {"evaluation_hash": "abc"})
    again, meta = bootstrap.load(tmp_path / "t.npz", DetectionTable)
    assert meta["evaluation_hash"] == "abc" and again.units == table.units
    w = bootstrap.weights(len(table.units), 50, 0)
    for k, v in table.scores(w).items():
        np.testing.assert_array_equal(v, again.scores(w)[k])
    (tmp_path / "bad.npz").write_bytes(b"not a table")
    from wildtrain.errors import WildtrainError
    with pytest.raises(WildtrainError, match="bad.npz: not an evaluation table"):
        bootstrap.load(tmp_path / "bad.npz", DetectionTable)


def test_classifier_table_equals_torchmetrics_on_the_test_set_and_resamples():
    """Per-crop labels grouped by source image; a class with no crop at all (and one never predicted) included."""
    from wildtrain.evaluate.classification import ClassificationTable, classification_metrics

    rng = np.random.default_rng(0)
    names = ["antelope", "bird", "zebra", "background", "rhino"]
    labels = rng.choice(4, 120)
    predicted = np.where(rng.random(120) < 0.7, labels, rng.choice(4, 120))
    units = [f"image:{i // 3}" for i in range(120)]
    table = ClassificationTable.from_labels(units, labels, predicted, names)
    assert len(table.units) == 40
    probs = np.eye(len(names))[predicted]
    expected = classification_metrics(probs, labels.tolist(), names)
    got = bootstrap.identity(table)
    for k in ("accuracy", "precision_macro", "recall_macro", "f1_macro"):
        assert got[k] == pytest.approx(expected[k], abs=1e-6), k
    for c in names:
        assert got[f"per_class.{c}.f1"] == pytest.approx(expected["per_class"][c]["f1"], abs=1e-6)
    w = bootstrap.weights(40, 3, 1)
    for r in range(3):
        keep = np.repeat(np.arange(120), w[r][[table.units.index(u) for u in units]])
        again = classification_metrics(probs[keep], labels[keep].tolist(), names)
        assert table.scores(w[r:r + 1])["f1_macro"][0] == pytest.approx(again["f1_macro"], abs=1e-6)


def test_segmenter_table_sums_per_image_matrices_like_the_evaluation():
    from wildtrain.evaluate.segmentation import SegmentationTable, confusion, scores

    rng = np.random.default_rng(1)
    truths = [rng.integers(0, 3, (8, 8)) for _ in range(6)]
    preds = [np.where(rng.random((8, 8)) < 0.8, t, rng.integers(0, 4, (8, 8))) for t in truths]
    names = ["background", "a", "b", "never"]
    mats = np.stack([confusion(t, p, 4) for t, p in zip(truths, preds)])
    table = SegmentationTable([f"image:{i}" for i in range(6)], mats, names)
    whole = scores(mats.sum(0), names)
    got = bootstrap.identity(table)
    assert got["miou"] == pytest.approx(whole["miou"]) and got["fw_iou"] == pytest.approx(whole["fw_iou"])
    w = np.array([[2, 0, 1, 0, 3, 0]], np.int32)
    assert table.scores(w)["miou"][0] == pytest.approx(scores(2 * mats[0] + mats[2] + 3 * mats[4], names)["miou"])


def test_the_model_card_prints_each_interval_beside_its_metric():
    from wildtrain.publish.card import metrics_section

    metrics = {"split": "test", "images": 68, "map50": 0.64248, "map50_ci95": [0.59012, 0.69344],
               "map50_ci95_low": 0.59012, "map50_ci95_high": 0.69344, "map75": 0.3, "evaluation_hash": "h",
               "bootstrap": {"resamples": 1000, "seed": 0, "units": 68, "unit": "image"},
               "per_class": {"zebra": {"ap50": 0.9, "ap50_ci95": [0.8, 0.95], "instances": 25},
                             "rhino": {"ap50": None, "ap50_ci95": None, "instances": 0}}}
    text = "\n".join(metrics_section(metrics, "metrics/eval.json"))
    assert "| map50 | 0.6425 | [0.5901, 0.6934] |" in text and "| map75 | 0.3000 | — |" in text
    assert "map50_ci95_low" not in text  # the scalar copies are for dvc exp show, not rows of their own
    assert "bootstrap over the 68 test images (1000 resamples, seed 0)" in text
    assert "| class | ap50 | ap50 95% CI | instances |" in text
    assert "| zebra | 0.9000 | [0.8000, 0.9500] | 25 |" in text and "| rhino | — | — | 0 |" in text


def test_bootstrap_params_are_checked(tmp_path):
    import yaml

    from wildtrain import params
    from wildtrain.errors import WildtrainError

    for section, key, value, message in (("evaluate", "resamples", 20, "evaluate.bootstrap.resamples: must be >= 100"),
                                         ("segmenter_evaluate", "seed", -1, "segmenter_evaluate.bootstrap.seed"),
                                         ("register", None, "x", "register.gate_margin: expected float")):
        f = tmp_path / "params.yaml"
        body = {section: {"bootstrap": {key: value}}} if key else {section: {"gate_margin": value}}
        f.write_text(yaml.safe_dump(body))
        with pytest.raises(WildtrainError, match=message):
            params.load(f)
    f.write_text(yaml.safe_dump({"classifier_register": {"gate_margin": 0.01}}))
    assert params.load(f).classifier_register.gate_margin == 0.01 and params.load(f).evaluate.bootstrap.resamples == 1000
