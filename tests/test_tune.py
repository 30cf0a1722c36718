"""`wildtrain tune` for real: tiny YOLO trials through the pipeline code, a real sqlite Optuna storage and
MLflow store; parallel workers, SIGKILL + resume, pruning inside Ultralytics' loop, a crashing trial,
`--apply` into `dvc exp run`, and DVC's own grid sweep with the queue."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
import yaml

from conftest import pipeline_env
from test_e2e import sh

pytestmark = pytest.mark.slow
optuna.logging.set_verbosity(optuna.logging.WARNING)
LR = {"type": "float", "low": 0.001, "high": 0.05, "log": True}


def set_params(repo: Path, train: dict | None = None, **tune) -> None:
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    raw["train"].update(train or {})
    raw["tune"].update(tune)
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.fixture(scope="module")
def repo(pipeline_repo, tmp_path_factory) -> Path:
    """A clone of the session's tiny pipeline (trained, evaluated, registered: a user's repo before tuning);
    trials read its canonical data/coco and data/yolo. One-epoch, 64 px trials keep the module cheap, and `--apply`'s
    register stage skips the exports (their parity checks are the fixture's: test_e2e.py)."""
    ws = pipeline_repo.clone(tmp_path_factory.mktemp("tune") / "repo")
    raw = yaml.safe_load((ws.path / "params.yaml").read_text())
    raw["train"].update(epochs=1, imgsz=64, batch=8, workers=0, close_mosaic=0)
    raw["register"].update(export=False)
    (ws.path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    ws.sh("git", "commit", "-qam", "tuning params")
    return ws.path


def storage(repo: Path) -> str:
    return f"sqlite:///{repo / 'optuna.db'}"


def tune(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return sh(["python", "-m", "wildtrain.cli", "tune", *args], repo, pipeline_env(repo), check=check)


def mlflow_runs(repo: Path, study: str) -> list:
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    client = MlflowClient()
    exp = client.get_experiment_by_name("wildtrain")
    return client, client.search_runs([exp.experiment_id], filter_string=f"tags.`optuna.study` = '{study}'")


def test_two_workers_share_one_study_exactly(repo: Path):
    pipeline_model = (repo / "models/model.pt").read_bytes()
    set_params(repo, study="par", n_trials=3, pruner="none", sampler="tpe",
               space={"train.lr0": LR, "train.momentum": {"type": "float", "low": 0.8, "high": 0.95}})
    out = tune(repo, "--workers", "2").stdout
    study = optuna.load_study(study_name="par", storage=storage(repo))
    trials = study.get_trials()
    assert [t.number for t in trials] == [0, 1, 2]  # none lost, none duplicated, no overshoot
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert len({t.user_attrs["worker_pid"] for t in trials}) == 2  # both workers ran trials
    for t in trials:  # each trial trained and evaluated in its own work dir with its own params
        work = repo / t.user_attrs["workdir"]
        assert (work / "models/model.pt").is_file() and (work / "metrics/eval.json").is_file()
        ev = json.loads((work / "metrics/eval.json").read_text())
        assert ev["split"] == "val" and ev["map50_95"] == t.value
        info = json.loads((work / "models/model.json").read_text())["training"]
        assert info["epochs_completed"] == 1
    assert (repo / "models/model.pt").read_bytes() == pipeline_model  # the pipeline's own outputs are untouched

    summary = json.loads((repo / "metrics/tune.json").read_text())
    assert summary["trials"] == {"COMPLETE": 3} and summary["total"] == 3 and summary["n_trials"] == 3
    best = study.best_trial
    assert summary["best"] == {"number": best.number, "value": best.value, "params": best.params}
    snippet = yaml.safe_load((repo / "metrics/tune_best_params.yaml").read_text())
    assert snippet == {"train": {"lr0": best.params["train.lr0"], "momentum": best.params["train.momentum"]}}
    assert summary["apply"] in out and summary["apply"].startswith("dvc exp run -S train.lr0=")
    history = json.loads((repo / "metrics/tune/history.json").read_text())
    assert [r["trial"] for r in history] == [0, 1, 2]
    assert summary["importance"] or summary["importance_note"]
    for png in ("history.png", "importance.png"):
        assert (repo / "metrics/tune" / png).read_bytes()[:4] == b"\x89PNG"

    client, runs = mlflow_runs(repo, "par")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.run_id == summary["mlflow_parent_run_id"]
    assert parents[0].info.status == "FINISHED" and parents[0].data.metrics["trials.COMPLETE"] == 3
    assert sorted(int(r.data.tags["optuna.trial"]) for r in children) == [0, 1, 2]
    for r in children:
        assert r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert r.info.status == "FINISHED" and r.data.tags["optuna.state"] == "COMPLETE"
        assert r.data.params["train.lr0"] == str(trials[int(r.data.tags["optuna.trial"])].params["train.lr0"])
        assert "tune.map50_95" in r.data.metrics and "metrics/mAP50-95_B" in r.data.metrics  # final + per epoch


def _wait_for_first_report(repo: Path, study: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            trials = optuna.load_study(study_name=study, storage=storage(repo)).get_trials()
        except KeyError:
            trials = []
        if trials and trials[0].intermediate_values:
            return
        time.sleep(0.3)
    raise AssertionError("trial 0 never reported an epoch")


def test_sigkill_resume_prune_and_crash(repo: Path):
    space = {"train.lr0": LR, "train.optimizer": {"type": "categorical", "choices": ["SGD", "SDG"]}}
    set_params(repo, train={"epochs": 20}, study="res", n_trials=2, pruner="median", sampler="random",
               prune_startup_trials=1, prune_warmup_epochs=0, space=space)
    study = optuna.create_study(study_name="res", storage=storage(repo), direction="maximize")
    study.enqueue_trial({"train.lr0": 0.01, "train.optimizer": "SGD"})

    # 1) SIGKILL the worker in the middle of trial 0.
    proc = subprocess.Popen(["python", "-m", "wildtrain.cli", "tune"], cwd=repo, env=pipeline_env(repo),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_first_report(repo, "res")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    killed = study.get_trials()[0]
    assert killed.state.name == "RUNNING" and killed.user_attrs["worker_pid"] == proc.pid

    # 2) Before resuming: a finished trial that was good at every epoch (so the median pruner has a
    #    bar to compare with), then a trial whose optimizer name is a typo (it crashes in Ultralytics),
    #    then an ordinary trial, which is far below that bar after its first epoch.
    dims = {"train.lr0": optuna.distributions.FloatDistribution(0.001, 0.05, log=True),
            "train.optimizer": optuna.distributions.CategoricalDistribution(["SGD", "SDG"])}
    study.add_trial(optuna.trial.create_trial(params={"train.lr0": 0.02, "train.optimizer": "SGD"}, distributions=dims,
                                              value=0.9, intermediate_values={0: 0.9, 1: 0.9}))
    study.enqueue_trial({"train.lr0": 0.01, "train.optimizer": "SDG"})
    study.enqueue_trial({"train.lr0": 0.01, "train.optimizer": "SGD"})
    set_params(repo, train={"epochs": 2})
    out = tune(repo)

    trials = study.get_trials()
    assert [(t.number, t.state.name) for t in trials] == [(0, "FAIL"), (1, "COMPLETE"), (2, "FAIL"), (3, "PRUNED")]
    assert trials[0].user_attrs["error"] == f"interrupted: worker {trials[0].user_attrs['worker_host']}:{proc.pid} died"
    assert trials[0].intermediate_values  # what it reported before the kill is kept
    assert "Optimizer 'SDG' not found" in trials[2].user_attrs["error"]
    assert list(trials[3].intermediate_values) == [0]  # stopped after its first of 2 epochs
    assert "trial 3 pruned after epoch 0" in out.stdout and "marked interrupted trial(s) 0 failed" in out.stdout
    assert not (repo / trials[3].user_attrs["workdir"] / "metrics/eval.json").exists()  # pruned: never evaluated

    summary = json.loads((repo / "metrics/tune.json").read_text())
    assert summary["trials"] == {"FAIL": 2, "COMPLETE": 1, "PRUNED": 1} and summary["total"] == 4
    assert summary["best"]["number"] == 1

    client, runs = mlflow_runs(repo, "res")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {int(r.data.tags["optuna.trial"]): r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert len(parents) == 1 and sorted(children) == [0, 2, 3]  # trial 1 was added, not run
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in children.values())
    assert (children[0].info.status, children[0].data.tags["optuna.state"]) == ("FAILED", "FAIL")
    assert (children[2].info.status, children[2].data.tags["optuna.state"]) == ("FAILED", "FAIL")
    assert "SDG" in children[2].data.tags["error"]
    assert (children[3].info.status, children[3].data.tags["optuna.state"]) == ("KILLED", "PRUNED")
    steps = [m.step for m in client.get_metric_history(children[3].info.run_id, "metrics/mAP50-95_B")]
    assert steps == [0]

    # 3) Run again: the study is complete, nothing new is trained.
    again = tune(repo)
    assert len(study.get_trials()) == 4 and "trial 4" not in again.stdout


def test_apply_best_and_dvc_grid_queue(repo: Path):
    env = pipeline_env(repo)
    set_params(repo, study="apply", n_trials=1, space={"train.lr0": LR})
    study = optuna.create_study(study_name="apply", storage=storage(repo), direction="maximize")
    study.add_trial(optuna.trial.create_trial(params={"train.lr0": 0.004}, value=0.5, distributions={
        "train.lr0": optuna.distributions.FloatDistribution(0.001, 0.05, log=True)}))
    out = tune(repo, "--apply").stdout  # the study is complete: no training, straight to `dvc exp run`
    assert "tune: dvc exp run -S train.lr0=0.004 register" in out and "Ran experiment(s)" in out
    assert yaml.safe_load((repo / "params.yaml").read_text())["train"]["lr0"] == 0.004
    assert json.loads((repo / "metrics/eval.json").read_text())["split"] == "test"  # the pipeline's own evaluate

    # DVC's own grid sweep: queue two values, run the queue, compare, apply one.
    sh(["git", "checkout", "--", "params.yaml"], repo, env)
    # (up to `evaluate`: the registry step is not what is compared here. 0.004 is what `--apply` just trained and
    # evaluated, so that experiment's stages are up to date and only 0.001 trains: the queue still runs both)
    queued = sh(["dvc", "exp", "run", "--queue", "-S", "train.lr0=0.004,0.001", "evaluate"], repo, env).stdout
    names = re.findall(r"Queued experiment '([^']+)'", queued)
    assert len(names) == 2
    sh(["dvc", "queue", "start", "-j", "1"], repo, env)
    deadline, polls = time.monotonic() + 400, 0
    while time.monotonic() < deadline:  # git refs are cheap to poll; `dvc queue status` is a dvc start-up
        refs = sh(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], repo, env).stdout
        polls += 1
        if all(f"/{n}\n" in refs for n in names) or polls % 10 == 0:
            status = sh(["dvc", "queue", "status"], repo, env).stdout
            if not re.search(r"\b(Queued|Running)\b", status):
                break
        time.sleep(2)
    assert all(re.search(rf"{n}\s+.*Success", status) for n in names), status
    table = sh(["dvc", "exp", "show", "--csv", "--sort-by", "metrics/eval.json:map50_95",
                "--drop", ".*", "--keep", "Experiment|train.lr0|metrics/eval.json:map50_95$"], repo, env).stdout
    # (the metric named with its file: eval_two_stage.json has a map50_95 too, which makes the bare name ambiguous;
    # `$`: not its map50_95_ci95_low/_high columns)
    lr = dict(re.findall(r"^([a-z]+-[a-z]+),[^,]*,([0-9.e-]+)$", table, re.M))
    assert {lr[n] for n in names} == {"0.001", "0.004"}, table
    pick = next(n for n in names if lr[n] == "0.001")
    sh(["dvc", "exp", "apply", pick], repo, env)
    assert yaml.safe_load((repo / "params.yaml").read_text())["train"]["lr0"] == 0.001
    sh(["dvc", "queue", "stop"], repo, env)
