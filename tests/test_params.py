import dataclasses

import pytest
import yaml

from wildtrain import families, params
from wildtrain.errors import WildtrainError
from conftest import REPO


def test_repo_params_load_and_list_every_key():
    p = params.load(REPO / "params.yaml")
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    defaults = params.as_dict(params.Params())
    for section in ("data", "convert", "train", "evaluate", "register", "tracking", "tune", "rebalance", "classifier",
                    "classifier_evaluate", "classifier_register", "two_stage", "segmenter", "segmenter_evaluate",
                    "segmenter_register", "yoloseg", "yoloseg_evaluate", "yoloseg_register", "predict"):
        assert set(raw[section]) == set(defaults[section]), section  # the file documents every key
    assert p.train.framework == "yolo"


def test_dvc_yaml_paths_match_params_paths():
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    paths = params.Paths()
    outs = {o if isinstance(o, str) else next(iter(o)) for s in dvc["stages"].values() for o in s.get("outs", [])}
    assert outs == {paths.raw, paths.coco, paths.yolo, paths.crops, paths.rebalance, paths.models, paths.predictions, paths.classifier,
                    *(f"{paths.predictions}_{f}" for f in ("two_stage", "classifier", "segmenter")), paths.segmenter, *(f"{paths.publish}/{family}" for family in families.FAMILIES if family not in families.OPT_IN)}
    assert all(paths.source in s["deps"] for name, s in dvc["stages"].items() if name == "prepare")
    assert "metrics/train/metrics.json" in dvc["metrics"]
    assert "metrics/train_classifier/metrics.json" in dvc["metrics"]
    assert "metrics/train_segmenter/metrics.json" in dvc["metrics"]


@pytest.mark.parametrize("text, message", [
    ("train:\n  epoch: 3\n", "unknown key 'train.epoch'"),
    ("train:\n  epochs: abc\n", "train.epochs: expected int, got 'abc'"),
    ("train:\n  epochs: true\n", "train.epochs: expected int"),
    ("train:\n  resume: sometimes\n", "train.resume: expected 'auto' | 'never'"),
    ("train:\n  imgsz: 100\n", "train.imgsz: must be a multiple of 32"),
    ("data: [1, 2]\n", "data: expected a mapping"),
    ("train: {epochs: [\n", "unreadable params file"),
    ("train:\n  phases:\n    - {epoch: 3}\n", "unknown key 'train.phases[0].epoch'"),
    ("train:\n  phases:\n    - {epochs: abc}\n", "train.phases[0].epochs: expected int, got 'abc'"),
    ("train:\n  phases: {epochs: 3}\n", "train.phases: expected a list of Phase"),
    ("train:\n  phases:\n    - {empty_ratio: 1.5}\n", "train.phases[0].empty_ratio: must be in [0, 1]"),
    ("train:\n  phases:\n    - {imgsz: 100}\n", "train.phases[0].imgsz: must be a multiple of 32"),
    ("train:\n  phases:\n    - {mine: {score: 0.3}}\n", "train.phases[0].mine: mines hard negatives for the next"),
    ("train:\n  phases:\n    - {mine: {scor: 0.3}}\n    - {}\n", "unknown key 'train.phases[0].mine.scor'"),
    ("train:\n  framework: mmdet\n  phases:\n    - {epochs: 1}\n", "train.phases: training in phases is for framework yolo only"),
    ("predict:\n  iou: 0\n", "predict.iou: must be in (0, 1]"),
    ("predict:\n  max_det: 0\n", "predict.max_det: must be >= 1"),
    ("predict:\n  merge_ios: 1.5\n", "predict.merge_ios: must be in (0, 1]"),
    ("predict:\n  slice: 16\n", "predict.slice: must be auto, off or a window size in px (>= 32)"),
])
def test_bad_params_are_one_clear_line(tmp_path, text, message):
    f = tmp_path / "params.yaml"
    f.write_text(text)
    with pytest.raises(WildtrainError) as e:
        params.load(f)
    assert message in str(e.value) and str(f) in str(e.value) and "\n" not in str(e.value)


def test_overlay_merges_and_refuses_unknown_keys(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text((REPO / "params.yaml").read_text())
    (tmp_path / "tiny.yaml").write_text("train:\n  epochs: 2\n")
    params.apply_overlay(tmp_path / "tiny.yaml", f)
    p = params.load(f)
    assert p.train.epochs == 2 and p.train.imgsz == params.load(REPO / "params.yaml").train.imgsz
    (tmp_path / "bad.yaml").write_text("train:\n  epochz: 2\n")
    before = f.read_text()
    with pytest.raises(WildtrainError, match="unknown key 'train.epochz'"):
        params.apply_overlay(tmp_path / "bad.yaml", f)
    assert f.read_text() == before


def test_tiny_config_composes_with_params():
    merged = params._merge(yaml.safe_load((REPO / "params.yaml").read_text()),
                           yaml.safe_load((REPO / "configs/tiny.yaml").read_text()), "", "tiny.yaml")
    p = params._build(params.Params, merged, "", "tiny.yaml")
    assert dataclasses.is_dataclass(p) and p.train.epochs <= 2
