"""`wildtrain tune` on the classifier and the segmenter for real: tiny Lightning trials through the pipeline code, a real
Optuna storage (sqlite; PostgreSQL for two workers) and MLflow store; pruning raised from inside Lightning's loop,
nested MLflow runs, `--apply` into `dvc exp run ... register_classifier`. The detector's study: test_tune.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import optuna
import pytest
import yaml

from conftest import pipeline_env
from test_e2e import sh

pytestmark = pytest.mark.slow
optuna.logging.set_verbosity(optuna.logging.WARNING)
LR = {"type": "float", "low": 0.0005, "high": 0.01, "log": True}


@pytest.fixture(scope="module")
def repo(pipeline_repo, tmp_path_factory) -> Path:
    """A clone of the session's tiny pipeline; one-epoch classifier and segmenter trials keep the module cheap, and
    `--apply`'s register stage skips the exports (their parity checks are the fixture's: test_e2e.py)."""
    ws = pipeline_repo.clone(tmp_path_factory.mktemp("tune-families") / "repo")
    raw = yaml.safe_load((ws.path / "params.yaml").read_text())
    raw["classifier"].update(epochs=1)
    raw["classifier_register"].update(export=False)
    raw["segmenter"].update(epochs=1, imgsz=64)
    (ws.path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    ws.sh("git", "commit", "-qam", "tuning params")
    return ws.path


def set_tune(repo: Path, **tune) -> None:
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    raw["tune"].update(tune)
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def tune(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return sh(["python", "-m", "wildtrain.cli", "tune", *args], repo, pipeline_env(repo))


def child_runs(repo: Path, study: str) -> dict:
    """trial number -> its MLflow run, all nested under the study's parent run."""
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    client = MlflowClient()
    exp = client.get_experiment_by_name("wildtrain")
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`optuna.study` = '{study}'")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].data.params["tune.family"] in ("classifier", "segmenter")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    return {int(r.data.tags["optuna.trial"]): r for r in children}


def test_classifier_study_prunes_inside_lightning_nests_runs_and_applies(repo: Path):
    storage = f"sqlite:///{repo / 'optuna.db'}"
    set_tune(repo, study="cls", storage=storage, metric="f1_macro", prune_metric="val/f1_macro", n_trials=1,
             pruner="none", space={"classifier.lr": LR})
    pipeline = [(repo / f).read_bytes() for f in ("metrics/eval_classifier.json", "models_classifier/model.pt")]
    assert "tune: trial 0 f1_macro = " in tune(repo).stdout
    # trials write in their own folder: the pipeline's model and metrics are untouched
    assert [(repo / f).read_bytes() for f in ("metrics/eval_classifier.json", "models_classifier/model.pt")] == pipeline
    study = optuna.load_study(study_name="cls", storage=storage)
    first = study.trials[0]
    assert first.state.name == "COMPLETE" and list(first.intermediate_values) == [0]  # reported from Lightning
    workdir = repo / first.user_attrs["workdir"]
    assert json.loads((workdir / "metrics/eval_classifier.json").read_text())["split"] == "val"  # tune.split
    assert json.loads((workdir / "models_classifier/model.json").read_text())["family"] == "classifier"
    run = child_runs(repo, "cls")[0]
    assert float(run.data.params["classifier.lr"]) == pytest.approx(first.params["classifier.lr"])
    assert run.data.metrics["tune.f1_macro"] == pytest.approx(first.value) and "val.accuracy" in run.data.metrics
    assert run.info.status == "FINISHED" and run.data.tags["optuna.state"] == "COMPLETE"

    # A finished trial that was better than any real one at epoch 0 (F1 2.0): the median pruner stops the next
    # trial after its first epoch, from inside Lightning's loop.
    dist = {"classifier.lr": optuna.distributions.FloatDistribution(LR["low"], LR["high"], log=True)}
    study.add_trial(optuna.trial.create_trial(params={"classifier.lr": 0.001}, distributions=dist, value=0.0,
                                              intermediate_values={0: 2.0}))
    # One process runs that trial and then applies the best one (a complete study's `--apply`, which trains nothing
    # before `dvc exp run`, is test_tune.py's).
    set_tune(repo, n_trials=3, pruner="median", prune_startup_trials=1, prune_warmup_epochs=0)
    out = tune(repo, "--apply").stdout
    assert "tune: trial 2 pruned after epoch 0 (val/f1_macro = " in out
    pruned = optuna.load_study(study_name="cls", storage=storage).trials[2]
    assert pruned.state.name == "PRUNED"
    run = child_runs(repo, "cls")[2]
    assert run.info.status == "KILLED" and run.data.tags["optuna.state"] == "PRUNED"

    summary = json.loads((repo / "metrics/tune.json").read_text())
    assert summary["metric"] == "f1_macro" and summary["trials"] == {"COMPLETE": 2, "PRUNED": 1}
    best = summary["best"]["params"]["classifier.lr"]
    assert yaml.safe_load((repo / "metrics/tune_best_params.yaml").read_text()) == {"classifier": {"lr": best}}
    assert out.index("tune: trial 2 pruned") < out.index("tune: dvc exp run")  # the study first, then the apply
    assert f"tune: dvc exp run -S classifier.lr={best!r} register_classifier" in out and "Ran experiment(s)" in out
    assert yaml.safe_load((repo / "params.yaml").read_text())["classifier"]["lr"] == best
    assert json.loads((repo / "metrics/eval_classifier.json").read_text())["split"] == "test"  # the pipeline's own


def test_segmenter_study_with_two_workers_on_postgresql(repo: Path, services):
    """Two worker processes share the PostgreSQL storage: exactly n_trials segmenter trials, each its own worker's."""
    space = {"segmenter.lr": LR, "segmenter.loss": {"type": "categorical", "choices": ["ce", "dice"]}}
    set_tune(repo, study="seg", storage=services.optuna_storage, metric="miou", prune_metric="val/miou", n_trials=2,
             space=space)
    pipeline = (repo / "models_segmenter/model.pt").read_bytes()
    tune(repo, "--workers", "2")
    assert (repo / "models_segmenter/model.pt").read_bytes() == pipeline
    from wildtrain.tune import study as study_mod

    trials = optuna.load_study(study_name="seg", storage=study_mod.open_storage(services.optuna_storage)).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert all(list(t.intermediate_values) == [0] and t.user_attrs["worker_pid"] for t in trials)
    runs = child_runs(repo, "seg")
    assert sorted(runs) == [0, 1] and all(r.data.params["segmenter.loss"] == trials[n].params["segmenter.loss"]
                                          for n, r in runs.items())
    assert all("val.miou" in r.data.metrics and "val.dice_macro" in r.data.metrics for r in runs.values())
    summary = json.loads((repo / "metrics/tune.json").read_text())
    assert summary["metric"] == "miou" and summary["apply"].endswith(" register_segmenter")
    assert set(yaml.safe_load((repo / "metrics/tune_best_params.yaml").read_text())["segmenter"]) == {"lr", "loss"}
