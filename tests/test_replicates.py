"""Seed replicates: the statistics on numbers whose answer is known by hand, the param-set identity, and one
end-to-end run of `wildtrain replicates` on the tiny config (N=2, detector only, resumed, then compared)."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

from conftest import copy_repo, pipeline_env
from wildtrain.errors import WildtrainError
from wildtrain.replicates import experiments, report, stats

T_975_DF2 = 4.302652729911275  # Student t quantile 0.975, 2 degrees of freedom (tables)


def test_summary_of_known_values():
    s = stats.summary([0.6, 0.8, 0.7])
    assert s["n"] == 3 and s["min"] == 0.6 and s["max"] == 0.8
    assert s["mean"] == pytest.approx(0.7) and s["sd"] == pytest.approx(0.1)
    one = stats.summary([0.5])
    assert one == {"n": 1, "mean": 0.5, "sd": None, "min": 0.5, "max": 0.5}


def test_paired_difference_within_noise():
    # differences 0.1, 0.2, 0.3: mean 0.2, sd 0.1, half-width t * 0.1 / sqrt(3) = 0.2484 -> covers 0
    a, b = {0: 0.7, 1: 0.8, 2: 0.9}, {0: 0.6, 1: 0.6, 2: 0.6}
    d = stats.paired(a, b)
    half = T_975_DF2 * 0.1 / math.sqrt(3)
    assert d["seeds"] == [0, 1, 2] and d["n"] == 3
    assert d["mean"] == pytest.approx(0.2) and d["sd"] == pytest.approx(0.1)
    assert d["ci95"] == pytest.approx([0.2 - half, 0.2 + half])
    assert d["verdict"] == "within noise"


def test_paired_difference_beyond_noise_and_only_common_seeds():
    # differences 0.10, 0.11, 0.09: mean 0.10, sd 0.01 -> [0.0752, 0.1248], above 0; seed 3 has no partner
    a, b = {0: 0.70, 1: 0.72, 2: 0.74, 3: 0.99}, {0: 0.60, 1: 0.61, 2: 0.65}
    d = stats.paired(a, b)
    half = T_975_DF2 * 0.01 / math.sqrt(3)
    assert d["seeds"] == [0, 1, 2]
    assert d["ci95"] == pytest.approx([0.10 - half, 0.10 + half])
    assert d["verdict"] == "beyond noise"
    # B better than A by the same amount: beyond noise too, interval below 0
    assert stats.paired(b, a)["ci95"][1] < 0 and stats.paired(b, a)["verdict"] == "beyond noise"


def test_paired_difference_needs_two_seeds():
    d = stats.paired({0: 0.7}, {0: 0.6, 1: 0.5})
    assert d["n"] == 1 and d["ci95"] is None and d["verdict"].startswith("n/a")


def test_scalars_skip_lists_tables_and_flags():
    ev = {"split": "test", "map50": 0.6, "map50_ci95": [0.5, 0.7], "per_class": {"zebra": {"ap50": 1.0}},
          "sliced": False, "images": 68}
    assert report.scalars("detector", ev) == {"detector.map50": 0.6, "detector.images": 68.0}
    assert report.ordered(["detector.images", "classifier.f1_macro", "detector.map50"]) == [
        "detector.map50", "classifier.f1_macro", "detector.images"]


def test_overrides_are_checked():
    assert experiments.split_overrides(["train.lr0=0.001 train.epochs=5", "evaluate.conf=0.01"]) == [
        "train.lr0=0.001", "train.epochs=5", "evaluate.conf=0.01"]
    with pytest.raises(WildtrainError, match="expected key=value"):
        experiments.split_overrides(["train.lr0"])
    with pytest.raises(WildtrainError, match="set per replicate"):
        experiments.split_overrides(["train.seed=3"])


def test_param_set_ignores_seeds_and_sees_params_and_code(tmp_path: Path):
    repo = copy_repo(tmp_path / "repo")
    base = experiments.param_set(repo, [])
    assert experiments.param_set(repo, ["train.lr0=0.001"]).key != base.key
    with pytest.raises(WildtrainError, match="has no key 'train.lr'"):
        experiments.param_set(repo, ["train.lr=0.001"])
    with pytest.raises(WildtrainError, match="train.epochs: must be >= 1"):
        experiments.param_set(repo, ["train.epochs=0"])
    params = repo / "params.yaml"
    params.write_text(params.read_text().replace("  seed: 0\n  deterministic", "  seed: 7\n  deterministic"))
    assert "seed: 7" in params.read_text()
    assert experiments.param_set(repo, []).key == base.key  # training seeds are what replicates vary
    (repo / "src" / "wildtrain" / "slicing.py").write_text("# edited\n")
    assert experiments.param_set(repo, []).key != base.key  # uncommitted code is part of the set


def test_find_reuses_a_replicate_that_evaluated_more_families():
    pset = experiments.ParamSet("params.yaml", (), "abcd1234")
    ev, ev_c = {"metrics/eval.json": {"map50": 0.5}}, {"metrics/eval_classifier.json": {"f1_macro": 0.9}}
    have = {"rep-abcd1234-dc-s0": {**ev, **ev_c}, "rep-abcd1234-d-s1": ev, "rep-ffff0000-d-s2": ev}
    assert experiments.find(have, pset, ("detector",), 0) == "rep-abcd1234-dc-s0"
    assert experiments.find(have, pset, ("detector",), 1) == "rep-abcd1234-d-s1"
    assert experiments.find(have, pset, ("classifier",), 1) is None
    assert experiments.find(have, pset, ("detector",), 2) is None  # another param set
    assert experiments.find({"rep-abcd1234-d-s3": {}}, pset, ("detector",), 3) is None  # no metrics: not done
    assert pset.experiment(("detector", "segmenter", "classifier"), 4) == "rep-abcd1234-dcs-s4"


def test_reports_are_written(tmp_path: Path):
    def side(key, values):
        return {"param_set": {"label": key, "overrides": [], "key": key}, "families": ["detector"], "seeds": [0, 1, 2],
                "commit": "0" * 40, "cpu": "test CPU", "values": values, "summary": report.summarise(values)}

    a = side("aaaaaaaa", {"detector.map50": {0: 0.7, 1: 0.8, 2: 0.9}, "detector.map50_95": {0: 0.3, 1: 0.31, 2: 0.32}})
    b = side("bbbbbbbb", {"detector.map50": {0: 0.6, 1: 0.6, 2: 0.6}, "detector.map50_95": {0: 0.2, 1: 0.2, 2: 0.21}})
    files = report.write(tmp_path / "one", a)
    assert [f.name for f in files] == ["one.json", "one.md", "one.png"] and files[2].stat().st_size > 1000
    assert "| detector.map50 | 0.8000 | 0.1000 | 0.7000 | 0.9000 | 3 |" in files[1].read_text()
    paired = {m: stats.paired(a["values"][m], b["values"][m]) for m in a["values"]}
    files = report.write(tmp_path / "two", {"kind": "compare", "a": a, "b": b, "paired": paired})
    md = files[1].read_text()
    assert "| detector.map50 |" in md and "within noise" in md and "beyond noise" in md
    assert json.loads(files[0].read_text())["paired"]["detector.map50"]["verdict"] == "within noise"


@pytest.mark.slow
def test_replicates_end_to_end_resume_and_compare(tmp_path: Path):
    """Two detector replicates (1 epoch) of the tiny config as DVC experiments; a rerun runs nothing; a comparison
    reuses them as A and runs B (another evaluate.conf); the workspace and MLflow registry are untouched."""
    repo = copy_repo(tmp_path / "repo")
    netlog = tmp_path / "network.log"
    env = pipeline_env(repo, netlog)

    def sh(*args):
        proc = subprocess.run(list(args), cwd=repo, env=env, capture_output=True, text=True, timeout=1800)
        assert proc.returncode == 0, f"{args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout + proc.stderr

    sh("python", "-m", "wildtrain.cli", "config", "apply", "configs/tiny.yaml")
    sh("git", "commit", "-qam", "tiny config")
    cmd = ["python", "-m", "wildtrain.cli", "replicates", "--n", "2", "-f", "detector", "-S", "train.epochs=1",
           "--name", "tiny"]
    out = sh(*cmd)
    assert out.count("Running stage 'train'") == 2
    result = json.loads((repo / "reports" / "replicates" / "tiny.json").read_text())
    assert result["ran"] == 2 and result["seeds"] == [0, 1] and result["families"] == ["detector"]
    names = result["experiments"]
    assert sorted(names) == ["0", "1"] and all(n.startswith(f"rep-{result['param_set']['key']}-d-s") for n in names.values())
    assert set(result["values"]["detector.map50"]) == {"0", "1"}
    s = result["summary"]["detector.map50_95"]
    assert s["n"] == 2 and s["min"] <= s["mean"] <= s["max"] and s["sd"] is not None
    assert (repo / "reports" / "replicates" / "tiny.png").stat().st_size > 1000
    shown = sh("dvc", "exp", "show", "--json")
    assert all(n in shown for n in names.values())
    # the workspace is left as it was: params, lock and outputs untouched, nothing registered
    assert sh("git", "status", "--porcelain").split() == ["??", "reports/"]
    assert not (repo / "models").exists() and not (repo / "mlflow.db").exists()

    again = sh(*cmd)  # resume: both replicates are found, nothing runs
    assert "Running stage" not in again and again.count(": done (rep-") == 2
    assert json.loads((repo / "reports" / "replicates" / "tiny.json").read_text())["ran"] == 0

    # B differs in an evaluate param only: its trainings are DVC's run-cache hits, so only its evaluate runs
    out = sh("python", "-m", "wildtrain.cli", "replicates", "--n", "2", "-f", "detector", "-S", "train.epochs=1",
             "--compare", "", "evaluate.conf=0.05", "--name", "cmp")
    assert "Running stage 'train'" not in out and out.count("Running stage 'evaluate'") == 2
    cmp = json.loads((repo / "reports" / "replicates" / "cmp.json").read_text())
    assert cmp["a"]["experiments"] == names and cmp["a"]["ran"] == 0 and cmp["b"]["ran"] == 2
    d = cmp["paired"]["detector.map50_95"]
    assert d["n"] == 2 and d["verdict"] in ("within noise", "beyond noise")
    a, b = cmp["a"]["values"]["detector.map50_95"], cmp["b"]["values"]["detector.map50_95"]
    assert d["diffs"] == pytest.approx([a["0"] - b["0"], a["1"] - b["1"]])
    assert "| detector.map50_95 |" in (repo / "reports" / "replicates" / "cmp.md").read_text()
    assert not netlog.exists() or netlog.read_text() == ""
