"""ROI rebalancing: the share-out arithmetic, the plan on a herd of look-alikes plus a rare look, the stage's
report and plot (counts reconcile, deterministic by seed), and the classifier training on the plan."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from classifier_data import SMALL, write_crops
from wildtrain import params
from wildtrain.data.rebalance import plan, report, share
from wildtrain.errors import WildtrainError


@pytest.mark.parametrize("target, capacity, expected", [
    (10, [2, 100, 100], [2, 4, 4]),  # a small bin is filled, the rest shared evenly
    (7, [10, 10, 10], [3, 2, 2]),    # the remainder to the first (largest) bins
    (10, [1, 1], [1, 1]),            # not enough capacity: everything there is
    (9, [3, 30, 6], [3, 3, 3]),
    (0, [5, 5], [0, 0]),
])
def test_share_is_even_within_capacity(target, capacity, expected):
    assert share(target, capacity) == expected


def herd_and_rare(seed: int = 0):
    """Class 0: a herd of 30 look-alikes around one point and 3 crops of a rare look far away; class 1: 10 crops."""
    rng = np.random.default_rng(seed)
    herd = rng.normal([1, 0, 0], 0.01, (30, 3))
    rare = rng.normal([0, 1, 0], 0.01, (3, 3))
    other = rng.normal([0, 0, 1], 0.05, (10, 3))
    return np.array([0] * 33 + [1] * 10), np.concatenate([herd, rare, other])


def test_plan_caps_the_herd_and_repeats_the_rare_look():
    labels, x = herd_and_rare()
    copies, cluster = plan(labels, x, clusters=2, target=20, max_copies=3, seed=0)
    assert copies[labels == 0].sum() == 20 and copies[labels == 1].sum() == 20  # every class at the target
    herd_cluster = cluster[0]
    assert (cluster[:30] == herd_cluster).all() and (cluster[30:33] != herd_cluster).all()
    assert copies[:30].sum() == 11 and (copies[:30] <= 1).all()  # the herd capped: 11 of 30 shown once
    assert (copies[30:33] == 3).all()  # the rare look at max_copies (9 < its even share of 10)
    r = report(labels, copies, cluster, ["zebra", "bird"])
    assert r["zebra"]["before"] == 33 and r["zebra"]["after"] == 20 and r["zebra"]["unused"] == 19
    assert sum(c["before"] for c in r["zebra"]["clusters"].values()) == 33
    assert sum(c["after"] for c in r["zebra"]["clusters"].values()) == 20
    again = plan(labels, x, clusters=2, target=20, max_copies=3, seed=0)
    assert (again[0] == copies).all() and (again[1] == cluster).all()  # deterministic by seed


def test_plan_target_defaults_to_the_median_class_count_and_never_exceeds_capacity():
    labels, x = herd_and_rare()
    copies, _ = plan(labels, x, clusters=3, target=0, max_copies=1, seed=0)
    # median of (33, 10) = 21; with max_copies 1 the 10-crop class can only give 10
    assert copies[labels == 0].sum() == 21 and copies[labels == 1].sum() == 10 and copies.max() == 1


def project(tmp_path: Path, **rebalance) -> Path:
    write_crops(tmp_path, SMALL)
    cfg = {"rebalance": {"enabled": True, "embed": "pixels", "clusters": 2, "target": 10, **rebalance},
           "classifier": {"backbone": "mobilenet_v3_small", "imgsz": 32, "batch": 8, "workers": 0, "device": "cpu"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path


@pytest.mark.parametrize("embed", ["pixels", "backbone"])
def test_stage_writes_plan_report_and_projection_that_reconcile(tmp_path, embed):
    from wildtrain.pipeline.rebalance import rebalance

    root = project(tmp_path, embed=embed)
    p = params.load(root / "params.yaml")
    summary = rebalance(p, root)
    crops = sum(SMALL["train"].values())
    assert summary["crops"] == crops and summary["showings"] == 30  # 3 classes x target 10
    for name, n in SMALL["train"].items():
        c = summary["per_class"][name]
        assert c["before"] == n and c["after"] == 10
        assert sum(v["before"] for v in c["clusters"].values()) == n
    plan_file = root / "data/rebalance/train.json"
    first = plan_file.read_bytes()
    copies = json.loads(first)["copies"]
    assert len(copies) == crops and sum(copies.values()) == 30
    rows = json.loads((root / "metrics/plots/rebalance_projection.json").read_text())
    assert len(rows) == crops and {"x", "y", "class", "cluster", "copies"} <= set(rows[0])
    assert (root / "metrics/plots/rebalance_projection.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((root / "metrics/rebalance.json").read_text()) == summary
    rebalance(p, root)
    assert plan_file.read_bytes() == first  # the same plan again


def test_classifier_trains_on_the_plan_and_refuses_a_stale_one(tmp_path):
    from wildtrain.families.classifier.datamodule import CropDataModule
    from wildtrain.pipeline.rebalance import rebalance

    root = project(tmp_path)
    p = params.load(root / "params.yaml")
    rebalance(p, root)
    plan_file = root / "data/rebalance/train.json"
    dm = CropDataModule(root / "data/crops", p.classifier, plan=plan_file)
    assert dm.rebalanced and len(dm.train_split.files) == 30 and dm.train_split.counts(3) == [10, 10, 10]
    assert dm.class_weights().tolist() == pytest.approx([1.0, 1.0, 1.0])  # balanced: loss weights even
    (root / "data/crops/train/bird/bird_0.png").unlink()
    with pytest.raises(WildtrainError, match="rerun the rebalance_crops stage"):
        CropDataModule(root / "data/crops", p.classifier, plan=plan_file)


def test_disabled_writes_a_plan_that_changes_nothing(tmp_path):
    from wildtrain.families.classifier.datamodule import CropDataModule
    from wildtrain.pipeline.rebalance import rebalance

    root = project(tmp_path, enabled=False)
    p = params.load(root / "params.yaml")
    summary = rebalance(p, root)
    assert summary["showings"] == summary["crops"] == sum(SMALL["train"].values())
    assert json.loads((root / "data/rebalance/train.json").read_text()) == {"enabled": False}
    assert json.loads((root / "metrics/plots/rebalance_projection.json").read_text()) == []
    dm = CropDataModule(root / "data/crops", p.classifier, plan=root / "data/rebalance/train.json")
    assert not dm.rebalanced and len(dm.train_split.files) == sum(SMALL["train"].values())
