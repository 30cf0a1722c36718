"""tune.space and the other tune inputs: refused before any training, with one clear line."""

from __future__ import annotations

import subprocess

import optuna
import pytest
import yaml

from conftest import pipeline_env
from wildtrain import params
from wildtrain.errors import WildtrainError
from wildtrain.tune import check_inputs, report, space

LR = {"type": "float", "low": 0.001, "high": 0.1, "log": True}


@pytest.mark.parametrize("bad, message", [
    ({"train.lr0": {"type": "float", "low": 0.1, "high": 0.01}}, "tune.space.train.lr0: low (0.1) must be < high (0.01)"),
    ({"train.lr0": {"type": "float", "low": 0.1, "high": 0.1}}, "low (0.1) must be < high (0.1)"),
    ({"train.lr00": LR}, "tune.space.train.lr00: 'lr00' is not a train param (known: "),
    ({"evaluate.conf": LR}, "tune.space.evaluate.conf: only train.<key>, classifier.<key>, segmenter.<key> can be tuned"),
    ({"lr0": LR}, "tune.space.lr0: only train.<key>, classifier.<key>, segmenter.<key> can be tuned"),
    ({"classifier.lr00": LR}, "tune.space.classifier.lr00: 'lr00' is not a classifier param (known: "),
    ({"segmenter.augment": LR}, "tune.space.segmenter.augment: 'augment' is not a segmenter param"),
    ({"segmenter.epochs": {"type": "float", "low": 1, "high": 3}}, "segmenter.epochs is an int: use type int"),
    ({"classifier.batch": {"type": "int", "low": 0, "high": 8}}, "classifier.batch: value 0 is refused"),
    ({"train.lr0": LR, "classifier.lr": LR}, "tune.space: one study tunes one family; the keys name train and classifier"),
    ({"train.batch": {"type": "categorical", "choices": []}}, "train.batch: choices must be a non-empty list"),
    ({"train.batch": {"type": "categorical"}}, "train.batch: choices must be a non-empty list"),
    ({"train.lr0": {"type": "float", "low": 0, "high": 0.1, "log": True}}, "train.lr0: log scale needs low > 0, got low=0"),
    ({"train.lr0": {"type": "normal", "low": 0.1, "high": 1}}, "train.lr0: type must be one of float, int, categorical"),
    ({"train.lr0": {"type": "float", "low": 0.001, "high": 0.1, "lg": True}}, "train.lr0: unknown key 'lg' for type float"),
    ({"train.epochs": {"type": "float", "low": 1, "high": 3}}, "train.epochs is an int: use type int or categorical"),
    ({"train.optimizer": {"type": "int", "low": 1, "high": 3}}, "train.optimizer is not numeric"),
    ({"train.epochs": {"type": "int", "low": 1.5, "high": 3}}, "train.epochs: low and high must be integers"),
    ({"train.imgsz": {"type": "int", "low": 50, "high": 96}}, "train.imgsz: value 50 is refused (train.imgsz: must be a multiple of 32"),
    ({"train.batch": {"type": "categorical", "choices": ["eight", 16]}}, "tune.space.train.batch choice: expected int, got 'eight'"),
    ({"train.batch": {"type": "categorical", "choices": [8, 8]}}, "train.batch: choices must be distinct"),
    ({"train.lr0": {"type": "float", "low": 0.01, "high": 0.1, "log": True, "step": 0.01}}, "step and log cannot be combined"),
    ({"train.lr0": "0.01"}, "train.lr0: expected a mapping with `type`"),
    ({}, "tune.space: expected a non-empty mapping"),
    ([LR], "tune.space: expected a non-empty mapping"),
])
def test_malformed_space_is_one_clear_line(bad, message):
    with pytest.raises(WildtrainError) as e:
        space.parse(bad, params.Params())
    text = str(e.value)
    assert message in text and text.startswith("params.yaml: tune.space") and "\n" not in text


def test_space_samples_within_bounds_and_builds_valid_params():
    spec = {"train.lr0": LR, "train.close_mosaic": {"type": "int", "low": 0, "high": 10, "step": 5},
            "train.cos_lr": {"type": "categorical", "choices": [True, False]},
            "train.imgsz": {"type": "categorical", "choices": [64, 96]}}
    dims = space.parse(spec, params.Params())
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        trial = study.ask()
        values = space.sample(trial, dims)
        p = space.with_values(params.Params(), values)
        assert 0.001 <= p.train.lr0 <= 0.1 and p.train.close_mosaic in (0, 5, 10)
        assert p.train.cos_lr in (True, False) and p.train.imgsz in (64, 96)
        assert p.train.epochs == params.Train().epochs  # untouched keys keep their params.yaml values
        study.tell(trial, 0.0)
    assert {d.key: type(d.distribution()).__name__ for d in dims}["train.lr0"] == "FloatDistribution"


def test_apply_command_is_an_argument_list():
    cmd = report.apply_command({"train.lr0": 0.005, "train.cos_lr": True, "train.optimizer": "SGD", "train.batch": 8})
    assert cmd == ["dvc", "exp", "run", "-S", "train.lr0=0.005", "-S", "train.cos_lr=true",
                   "-S", "train.optimizer=SGD", "-S", "train.batch=8", "register"]
    # another family's study runs up to that family's registration
    assert report.apply_command({"classifier.lr": 0.01})[-3:] == ["-S", "classifier.lr=0.01", "register_classifier"]
    assert report.apply_command({"segmenter.loss": "dice"})[-1] == "register_segmenter"


def test_classifier_and_segmenter_spaces_build_their_sections_params():
    spec = {"classifier.lr": LR, "classifier.optimizer": {"type": "categorical", "choices": ["adamw", "sgd"]},
            "classifier.batch": {"type": "int", "low": 8, "high": 32, "step": 8}}
    dims = space.parse(spec, params.Params())
    assert space.section(dims) == "classifier" and space.family(dims) == "classifier"
    p = space.with_values(params.Params(), {"classifier.lr": 0.02, "classifier.optimizer": "sgd", "classifier.batch": 16})
    assert (p.classifier.lr, p.classifier.optimizer, p.classifier.batch) == (0.02, "sgd", 16)
    assert p.train == params.Train() and p.segmenter == params.Segmenter()  # other sections untouched
    seg = space.parse({"segmenter.loss": {"type": "categorical", "choices": ["ce", "dice"]}}, params.Params())
    assert space.family(seg) == "segmenter"
    assert space.with_values(params.Params(), {"segmenter.loss": "dice"}).segmenter.loss == "dice"
    with pytest.raises(WildtrainError, match=r"segmenter.loss choice: expected .* got 'tversky'"):
        space.parse({"segmenter.loss": {"type": "categorical", "choices": ["ce", "tversky"]}}, params.Params())


@pytest.mark.parametrize("tune, message", [
    ({"metric": "map50_95"}, "tune.metric: 'map50_95' is not a metric of metrics/eval_classifier.json (known: f1_macro"),
    ({"metric": "f1_macro", "prune_metric": "metrics/mAP50-95(B)"},
     "tune.prune_metric: 'metrics/mAP50-95(B)' is not a per-epoch metric of the classifier (known: val/f1_macro"),
])
def test_a_classifier_study_needs_its_own_objective(tmp_path, tune, message):
    p = params.Params()
    p = p.__class__(**{**p.__dict__, "tune": params.Tune(space={"classifier.lr": LR}, **tune)})
    with pytest.raises(WildtrainError) as e:
        check_inputs(p, tmp_path)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_unknown_objective_metric_is_refused(tmp_path):
    p = params.Params()
    p = p.__class__(**{**p.__dict__, "tune": params.Tune(metric="map_50")})
    with pytest.raises(WildtrainError, match=r"tune.metric: 'map_50' is not a metric of metrics/eval.json \(known: map50_95"):
        check_inputs(p, tmp_path)


def test_cli_refuses_before_training(repo_copy):
    """Through `wildtrain tune`: exit 2, one `error:` line, no storage, no trial dirs."""
    env = pipeline_env(repo_copy)
    cmd = ["python", "-m", "wildtrain.cli", "tune"]
    missing = subprocess.run(cmd, cwd=repo_copy, env=env, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2
    assert missing.stderr.strip() == ("error: data/raw/manifest.json not found: tune reads the canonical data; "
                                      "run `dvc repro convert` first")
    raw = yaml.safe_load((repo_copy / "params.yaml").read_text())
    raw["tune"]["space"]["train.momentum"] = {"type": "float", "low": 0.98, "high": 0.8}
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    bad = subprocess.run(cmd, cwd=repo_copy, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("error: params.yaml: tune.space.train.momentum: low (0.98) must be < high (0.8)")
    assert not (repo_copy / "optuna.db").exists() and not (repo_copy / "runs").exists()
