"""One trial: the real train and evaluate stages in a per-trial work dir, as an MLflow child run.

The canonical data (data/coco, data/yolo, data/crops, data/raw) is read in place; everything a stage writes
(models, runs, metrics, predictions) is redirected under runs/tune/<study>/trial_<n>/, so trials never
touch the pipeline's own outputs and can run side by side. Each epoch's validation metric is reported
to Optuna from inside the training loop (Ultralytics' for the detector, Lightning's for the classifier and the
segmenter); raising TrialPruned there stops training at once (neither catches exceptions from callbacks; both
only tear down and re-raise).
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import sys
from pathlib import Path
from typing import Any

from wildtrain.errors import WildtrainError
from wildtrain.params import Params
from wildtrain.tune import space

TRIALS_DIR = "runs/tune"


def trial_dir(study_name: str, number: int) -> str:
    return f"{TRIALS_DIR}/{study_name}/trial_{number}"


def redirect(p: Params, workdir: str, family: str = "detector") -> Params:
    """Stage outputs under workdir; canonical inputs unchanged; objective scored on tune.split by `family`."""
    from wildtrain import families

    fam = families.get(family)
    paths = dataclasses.replace(p.paths, models=f"{workdir}/models", classifier=f"{workdir}/models_classifier",
                                segmenter=f"{workdir}/models_segmenter", runs=f"{workdir}/runs",
                                metrics=f"{workdir}/metrics", plots=f"{workdir}/metrics/plots",
                                predictions=f"{workdir}/predictions")
    train, ev = getattr(p, fam.train_section), getattr(p, fam.evaluate_section)
    return dataclasses.replace(p, paths=paths, **{fam.train_section: dataclasses.replace(train, resume="never"),
                                                  fam.evaluate_section: dataclasses.replace(ev, split=p.tune.split)})


def epoch_reporter(trial, metric: str, epochs: int):
    """Report `metric` per epoch; raise TrialPruned when the pruner says so."""
    import optuna

    def on_epoch(epoch: int, metrics: dict[str, Any]) -> None:
        if epoch >= epochs:  # Ultralytics' final validation of best.pt, logged one step past the last epoch
            return
        if metric not in metrics:
            raise WildtrainError(f"tune.prune_metric: '{metric}' is not a per-epoch metric "
                                 f"(known: {', '.join(sorted(map(str, metrics)))})")
        value = float(metrics[metric])
        trial.report(value, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch} ({metric} = {value:.4f})")

    return on_epoch


def child_run(client, experiment_id: str, parent_run_id: str, number: int):
    """The MLflow run of trial `number` under the study's parent run, or None if it never started."""
    runs = client.search_runs([experiment_id], filter_string=(
        f"tags.`mlflow.parentRunId` = '{parent_run_id}' and tags.`optuna.trial` = '{number}'"))
    return runs[0] if runs else None


def mark_child(client, run, state: str, error: str | None = None) -> None:
    """Name the child run after its trial and record the Optuna state (and error) on it."""
    if run is None:
        return
    rid = run.info.run_id
    client.set_tag(rid, "mlflow.runName", f"trial-{run.data.tags.get('optuna.trial')}")
    client.set_tag(rid, "optuna.state", state)
    if error:
        client.set_tag(rid, "error", error[:5000])
    status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}.get(state, "FAILED")
    if run.info.status != status:
        client.set_terminated(rid, status=status)


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _objective(p: Params, root: Path, trial, dims: list[space.Dim], tags: dict[str, str]) -> tuple[float, dict]:
    from wildtrain.pipeline.evaluate import evaluate
    from wildtrain.pipeline.train import train

    values = space.sample(trial, dims)
    workdir = trial_dir(p.tune.study, trial.number)
    family = space.family(dims)
    tp = redirect(space.with_values(p, values, f"tune trial {trial.number}"), workdir, family)
    shutil.rmtree(root / workdir, ignore_errors=True)
    trial.set_user_attr("workdir", workdir)
    epochs = getattr(tp, space.section(dims)).epochs
    train(tp, root, family, on_epoch=epoch_reporter(trial, p.tune.prune_metric, epochs), run_tags=tags)
    metrics = evaluate(tp, root, family)
    value = float(metrics[p.tune.metric])
    if not math.isfinite(value):
        raise ValueError(f"objective {p.tune.metric} is {value}")
    return value, metrics


def run(p: Params, root: Path, study, trial, dims: list[space.Dim], parent_run_id: str) -> str:
    """Run one trial and tell the study how it ended; returns the Optuna state name.

    A crash is recorded (trial FAIL with its error, child run FAILED) and the study goes on; a
    WildtrainError is the user's configuration, so it is recorded and then stops the worker;
    Ctrl-C is recorded and re-raised.
    """
    import optuna
    from mlflow.tracking import MlflowClient

    from wildtrain.tracking import mlflow_run

    n = trial.number
    tags = {"mlflow.parentRunId": parent_run_id, "optuna.study": study.study_name, "optuna.trial": str(n)}
    mlflow = mlflow_run.connect(p.tracking.experiment, root)
    client, experiment_id = MlflowClient(), mlflow.get_experiment_by_name(p.tracking.experiment).experiment_id

    def finish(state: str, error: str | None = None) -> None:
        if error:
            trial.set_user_attr("error", error)
        study.tell(trial, state=getattr(optuna.trial.TrialState, state))
        mark_child(client, child_run(client, experiment_id, parent_run_id, n), state, error)

    from wildtrain.tune.study import heartbeat

    try:
        with heartbeat(study, trial):
            value, metrics = _objective(p, root, trial, dims, tags)
    except optuna.TrialPruned as e:
        finish("PRUNED")
        print(f"tune: trial {n} {e}")
        return "PRUNED"
    except KeyboardInterrupt:
        finish("FAIL", "interrupted (Ctrl-C)")
        raise
    except WildtrainError as e:
        finish("FAIL", str(e))
        raise
    except Exception as e:  # a crashing trial must not end the study
        from wildtrain.tune.study import storage_error

        if storage_error(e):  # the storage is gone: nothing can be recorded; the worker stops (tune.work)
            raise
        finish("FAIL", one_line(e))
        print(f"tune: trial {n} failed: {one_line(e)}", file=sys.stderr)
        return "FAIL"
    study.tell(trial, value)
    run_ = child_run(client, experiment_id, parent_run_id, n)
    if run_ is not None:
        client.log_metric(run_.info.run_id, f"tune.{p.tune.metric}", value)
        for k in space.objectives(space.family(dims)):
            if isinstance(metrics.get(k), (int, float)):
                client.log_metric(run_.info.run_id, f"{p.tune.split}.{k}", float(metrics[k]))
    mark_child(client, run_, "COMPLETE")
    print(f"tune: trial {n} {p.tune.metric} = {value:.4f}")
    return "COMPLETE"
