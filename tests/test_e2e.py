"""The real pipeline on a tiny config: dvc repro, no-op rerun, dvc exp run -S, MLflow registry, no network.

The one `dvc repro` is the session's shared fixture (`pipeline_repo`, tests/pipeline_fixture.py);
experiments run in a clone of it.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import pipeline_env
from pipeline_fixture import sh  # noqa: F401  (test_tune.py and test_mmdet.py import it from here)

pytestmark = pytest.mark.slow


def ran_stages(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


DETECTOR = ["train", "evaluate", "register"]
CLASSIFIER = ["train_classifier", "evaluate_classifier", "register_classifier"]
TWO_STAGE = ["evaluate_two_stage", "register_two_stage"]
SEGMENTER = ["train_segmenter", "evaluate_segmenter", "register_segmenter"]


def in_order(ran: list[str], chain: list[str]) -> bool:
    return [s for s in ran if s in chain] == chain


def assert_full_repro(ran: list[str]) -> None:
    """Every stage once: data first, then each model family's chain in order (DVC may interleave them), the
    two-stage model after both of its parts are registered."""
    assert sorted(ran) == sorted(["prepare", "convert", "rebalance_crops", *DETECTOR, *CLASSIFIER, *TWO_STAGE,
                                  *SEGMENTER]), ran
    assert ran[:2] == ["prepare", "convert"], ran
    assert in_order(ran, DETECTOR) and in_order(ran, ["rebalance_crops", *CLASSIFIER]) and in_order(ran, TWO_STAGE), ran
    assert in_order(ran, SEGMENTER), ran
    assert ran.index("register_two_stage") > max(ran.index("register"), ran.index("register_classifier")), ran


def declared_outputs(repo: Path) -> list[Path]:
    dvc = yaml.safe_load((repo / "dvc.yaml").read_text())
    out = []
    for stage in dvc["stages"].values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                out.append(repo / (entry if isinstance(entry, str) else next(iter(entry))))
    out += [repo / m for m in dvc.get("metrics", [])]
    out += [repo / (p if isinstance(p, str) else next(iter(p))) for p in dvc.get("plots", [])]
    return out


def test_tiny_pipeline_end_to_end(pipeline_repo):
    repo = pipeline_repo.path
    assert_full_repro(ran_stages(pipeline_repo.repro))
    missing = [str(p) for p in declared_outputs(repo) if not p.exists()]
    assert not missing, missing
    assert (repo / "data/yolo/dataset.yaml").is_file() and (repo / "models/model.pt").is_file()

    report = json.loads((repo / "data/reports/validation.json").read_text())
    data = json.loads((repo / "metrics/data.json").read_text())
    assert report["images"]["kept"] == data["images"] == 24 == sum(data[s]["images"] for s in ("train", "val", "test"))
    assert report["boxes"]["kept"] == data["boxes"] == sum(data[s]["boxes"] for s in ("train", "val", "test"))
    ev = json.loads((repo / "metrics/eval.json").read_text())
    assert {"map50_95", "map50", "map75", "per_class"} <= set(ev) and 0 <= ev["map50"] <= 1
    low, high = ev["map50_ci95"]  # intervals from the bootstrap over the test images, and the counting error
    assert low <= ev["map50"] <= high and (ev["map50_ci95_low"], ev["map50_ci95_high"]) == (low, high)
    assert ev["bootstrap"]["units"] == ev["images"] and ev["count_mae_ci95"][0] <= ev["count_mae"]
    assert all("count_mae" in c and "ap50_ci95" in c for c in ev["per_class"].values())
    reg = json.loads((repo / "metrics/register.json").read_text())
    assert reg["version"] == 1 and "champion" in reg["aliases"] and "challenger" in reg["aliases"]
    assert reg["gate_value_ci95"] == ev["map50_95_ci95"] and reg["evaluation_table"] == "evaluation/v1/test_tables.npz"
    for suffix in ("", "_classifier", "_two_stage", "_segmenter"):  # each family's per-image table for the gate
        assert (repo / f"data/predictions{suffix}/test_tables.npz").is_file(), suffix
    shown = pipeline_repo.sh("dvc", "metrics", "show").stdout  # DVC drops lists: the scalar copies show
    assert "map50_ci95_low" in shown and "f1_macro_ci95_high" in shown and "miou_ci95_low" in shown
    ev_cls = json.loads((repo / "metrics/eval_classifier.json").read_text())
    assert {"accuracy", "f1_macro", "precision_macro", "recall_macro", "per_class", "confusion"} <= set(ev_cls)
    assert ev_cls["explained"] >= 1 and (repo / "metrics/plots/classifier_explanations.png").is_file()
    rebalanced = json.loads((repo / "metrics/rebalance.json").read_text())  # on in configs/tiny.yaml
    assert rebalanced["enabled"] and rebalanced["crops"] == sum(c["before"] for c in rebalanced["per_class"].values())
    assert rebalanced["showings"] == sum(c["after"] for c in rebalanced["per_class"].values())
    cls_card = json.loads((repo / "models_classifier/model.json").read_text())
    assert cls_card["extra"]["rebalanced"] is True
    assert sum(cls_card["extra"]["class_counts"].values()) == rebalanced["showings"]  # it trained on the plan
    reg_cls = json.loads((repo / "metrics/register_classifier.json").read_text())
    assert reg_cls["model_name"] == "wildtrain-classifier" and reg_cls["aliases"] == ["challenger", "champion"]
    two = json.loads((repo / "metrics/eval_two_stage.json").read_text())
    assert two["evaluation_hash"] == ev["evaluation_hash"]  # the same evaluator on the same test set
    assert set(two["vs_detector"]) >= {"map50_95", "map50"}
    assert two["vs_detector"]["map50"] == pytest.approx(two["map50"] - ev["map50"], abs=1e-6)
    reg_two = json.loads((repo / "metrics/register_two_stage.json").read_text())
    assert reg_two["model_name"] == "wildtrain-two-stage" and reg_two["aliases"] == ["challenger", "champion"]
    card = json.loads((repo / "models/model.json").read_text())
    assert card["family"] == "detector" and card["hashes"]["tensors_sha256"]

    again = pipeline_repo.sh("dvc", "repro")
    assert ran_stages(again.stdout) == [] and "up to date" in again.stdout
    assert pipeline_repo.sh("dvc", "status").stdout.strip() == "Data and pipelines are up to date."
    assert pipeline_repo.network_log() == "", pipeline_repo.network_log()


def test_experiments_rerun_only_their_chain(pipeline_repo, tmp_path: Path):
    ws = pipeline_repo.clone(tmp_path / "repo")
    # `export=false` in the sections of the register stages each experiment reruns anyway (so the stages that run
    # are the same): the ONNX/TorchScript/OpenVINO exports and their parity checks are the fixture's to prove
    # (test_tiny_pipeline_end_to_end), not what an experiment's rerun chain is about
    exp = ws.sh("dvc", "exp", "run", "-S", "train.epochs=1", "-S", "register.export=false",
                "-S", "two_stage.export=false")
    ran = ran_stages(exp.stdout)  # the classifier's stages are untouched; the two-stage model is rebuilt
    assert sorted(ran) == sorted(DETECTOR + TWO_STAGE) and in_order(ran, DETECTOR) and in_order(ran, TWO_STAGE), ran
    exp_cls = ws.sh("dvc", "exp", "run", "-S", "classifier.lr=0.002", "-S", "classifier_register.export=false")
    ran = ran_stages(exp_cls.stdout)  # and the detector's are untouched by classifier params
    assert sorted(ran) == sorted(CLASSIFIER + TWO_STAGE) and in_order(ran, CLASSIFIER), ran
    bad = ws.sh("dvc", "exp", "run", "-S", "train.epochz=1", check=False)
    assert bad.returncode != 0 and "epochz" in (bad.stdout + bad.stderr)

    params_diff = ws.sh("dvc", "params", "diff", "--json").stdout
    change = json.loads(params_diff)["params.yaml"]["train.epochs"]
    assert (change["old"], change["new"]) == (2, 1)
    change = json.loads(params_diff)["params.yaml"]["classifier.lr"]
    assert (change["old"], change["new"]) == (0.001, 0.002)
    metrics_diff = ws.sh("dvc", "metrics", "diff", "--json").stdout
    assert {"metrics/train/metrics.json", "metrics/train_classifier/metrics.json"} <= set(json.loads(metrics_diff))
    shown = json.loads(ws.sh("dvc", "exp", "show", "--json").stdout)
    workspace = shown[0]["data"]
    assert workspace["params"]["params.yaml"]["data"]["train"]["epochs"] == 1
    assert "map50_95" in workspace["metrics"]["metrics/eval.json"]["data"]
    assert len(shown) >= 2  # the baseline commit and its experiment are listed too
    ws.sh("dvc", "plots", "diff", "--json")

    # The registry (a real sqlite store in the repo, copied from the fixture's) holds both versions with aliases
    # (one interpreter for both models: an MLflow import is seconds).
    check = ("import mlflow; from mlflow.tracking import MlflowClient; "
             f"mlflow.set_tracking_uri('sqlite:///{ws.path / 'mlflow.db'}'); c = MlflowClient(); "
             "[print(sorted((int(v.version), sorted(c.get_model_version(v.name, v.version).aliases)) "
             "for v in c.search_model_versions(f\"name='{n}'\"))) "
             "for n in ('wildtrain-detector', 'wildtrain-classifier')]")
    versions, cls_versions = ws.sh("python", "-c", check).stdout.strip().splitlines()[-2:]
    assert versions.startswith("[(1, ") and "(2, " in versions and "'challenger'" in versions
    assert cls_versions.startswith("[(1, ") and "(2, " in cls_versions

    assert ws.network_log() == "", ws.network_log()


def test_network_block_catches_connections(tmp_path: Path):
    """The guard used above is not a no-op: a real lookup/connection attempt is caught and logged."""
    netlog = tmp_path / "network.log"
    env = pipeline_env(tmp_path, netlog)
    code = "import socket\ntry:\n    socket.create_connection(('example.com', 80), timeout=2)\nexcept OSError as e:\n    print(e)"
    out = subprocess.run(["python", "-c", code], env=env, capture_output=True, text=True, timeout=60).stdout
    assert "blocked" in out and "example.com" in netlog.read_text()
