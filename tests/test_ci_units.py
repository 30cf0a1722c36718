"""The pieces of `make ci-rerun` that need no pipeline: noise bands and labels, the config check, the rerun plan."""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from wildtrain.ci import config, dvc_steps, noise

REPO_DVC_YAML = Path(__file__).resolve().parents[1] / "dvc.yaml"


def test_bands_and_labels():
    base = {"map50": 0.50, "map50_ci95": [0.40, 0.60], "images": 68, "per_class": {"a": {"ap50": 0.7}}}
    head = {"map50": 0.62, "map50_ci95": [0.52, 0.72], "images": 68, "per_class": {"a": {"ap50": 0.9}}}
    rows = {r.metric: r for r in noise.rows("detector", base, head, None)}
    m = rows["map50"]
    assert math.isclose(m.test_band, math.sqrt(0.1 ** 2 + 0.1 ** 2)) and m.seed_band is None
    assert math.isclose(m.delta, 0.12) and m.label == "within noise"  # 0.12 < 0.1414
    assert rows["images"].label == "no band" and rows["per_class.a.ap50"].label == "no band"
    assert "map50_ci95" not in rows  # an interval is not a metric
    reps = {"summary": {"detector.map50": {"sd": 0.01}, "detector.images": {"sd": 0.0}}}
    rows = {r.metric: r for r in noise.rows("detector", base, head, reps)}
    assert math.isclose(rows["map50"].seed_band, 1.96 * math.sqrt(2) * 0.01)
    assert rows["map50"].band == rows["map50"].test_band  # the wider of the two
    assert rows["images"].label == "within noise"  # sd 0, no change
    head["map50"], head["map50_ci95"] = 0.70, [0.69, 0.71]
    m = {r.metric: r for r in noise.rows("detector", base, head, None)}["map50"]
    assert m.label == "beyond noise"  # 0.20 > sqrt(0.1^2 + 0.01^2)


def test_lock_mismatches_name_the_stale_params():
    lock = {"stages": {"train": {"params": {"params.yaml": {"train": {"epochs": 2, "lr0": 0.004}}}},
                       "evaluate": {"params": {"params.yaml": {"predict.conf": 0.25}}}}}
    assert config.lock_mismatches(lock, {"train": {"epochs": 2, "lr0": 0.004}, "predict": {"conf": 0.25}}) == []
    found = config.lock_mismatches(lock, {"train": {"epochs": 30, "lr0": 0.004}, "predict": {}})
    assert found == ["train: train.epochs = 2 in dvc.lock (params.yaml: 30)",
                     "evaluate: predict.conf = 0.25 in dvc.lock (params.yaml: absent)"]


def test_plan_follows_outputs_downstream():
    pipeline = yaml.safe_load(REPO_DVC_YAML.read_text())
    assert dvc_steps.plan(pipeline, ["train"]) == ["train", "evaluate", "register", "evaluate_two_stage",
                                                   "register_two_stage"]
    assert dvc_steps.plan(pipeline, ["train_segmenter"]) == ["train_segmenter", "evaluate_segmenter",
                                                             "register_segmenter"]
    assert dvc_steps.plan(pipeline, ["prepare"]) == list(pipeline["stages"])


def test_status_reasons_read_dvc_status_json():
    found = {"train": [{"changed deps": {"params.yaml": {"train": "modified"}, "data/raw": "modified"}}],
             "data/source/survey.dvc": [{"changed outs": {"data/source/survey": "modified"}}], "x": ["always changed"]}
    assert dvc_steps.stale_reasons(found) == {"train": ["param train modified", "dep data/raw modified"],
                                              "data/source/survey.dvc": ["out data/source/survey modified"],
                                              "x": ["always changed"]}


def test_replicates_match_per_family_on_the_params_its_stages_read(tmp_path):
    """Replicates made at an older commit keep a family's seed band while every param its stages read is unchanged
    (a new key at its default included), and lose it for the family whose own section changed."""
    import json
    import subprocess

    from wildtrain.ci import git_files

    repo = Path(__file__).resolve().parents[1]
    git = ["git", "-c", "user.email=ci@wildtrain", "-c", "user.name=ci"]
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    old = {**params, "data": {k: v for k, v in params["data"].items() if k != "stream_buffer"}}  # a key added since
    (tmp_path / "dvc.yaml").write_text(REPO_DVC_YAML.read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(old))
    subprocess.run([*git, "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "made the replicates"], cwd=tmp_path, check=True)
    made_at = git_files.commit(tmp_path, "HEAD")
    report = {"kind": "replicates", "param_set": {"label": "params.yaml", "overrides": [], "key": "elsewhere"},
              "families": ["detector", "classifier", "two_stage", "segmenter"], "seeds": [0, 1, 2],
              "commit": made_at, "cpu": "x86", "summary": {"detector.map50": {"sd": 0.08},
                                                          "segmenter.miou": {"sd": 0.07}}}
    (tmp_path / "reports/replicates").mkdir(parents=True)
    (tmp_path / "reports/replicates/r.json").write_text(json.dumps(report))
    new = yaml.safe_load(yaml.safe_dump(params))
    new["segmenter"]["epochs"] += 1
    new["train"]["seed"] += 7  # seeds are what replicates vary
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(new))
    subprocess.run([*git, "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "segmenter: one more epoch"], cwd=tmp_path, check=True)

    found = noise.matching_replicates(tmp_path, "HEAD", new)
    assert found["match"] == "family params" and found["matched"] == ["detector", "classifier", "two_stage"], found
    seg = {r.metric: r for r in noise.rows("segmenter", {"miou": 0.7}, {"miou": 0.6}, found)}["miou"]
    det = {r.metric: r for r in noise.rows("detector", {"map50": 0.7}, {"map50": 0.6}, found)}["map50"]
    assert seg.seed_band is None and math.isclose(det.seed_band, 1.96 * math.sqrt(2) * 0.08)
    new["train"]["lr0"] *= 2
    assert noise.matching_replicates(tmp_path, "HEAD", new)["matched"] == ["classifier"]
