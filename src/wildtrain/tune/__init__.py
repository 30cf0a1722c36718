"""Optuna sweeps over params.yaml `train`, `classifier` or `segmenter` keys, run through the real pipeline
(docs/how-to/tune.md). The section the space names picks the family a study trains and evaluates.

`launch` is `wildtrain tune`: check the space and the data before any training, open or resume the
study, mark trials of dead workers failed, open the study's MLflow parent run, run the workers (in
this process for one, subprocesses for more, all on the same storage), then write the outputs.
`work` is one worker's loop: claim a trial, run it, until the study has n_trials or time is up.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from wildtrain.errors import WildtrainError
from wildtrain.params import Params
from wildtrain.tune import report, space, study as study_mod, trial as trial_mod

INTERRUPTED = 130  # a worker's exit code after Ctrl-C (wildtrain.pipeline.entry)


# What a family's evaluate writes (metrics/eval{suffix}.json) that a study can optimise, and what its training
# reports per epoch (tune.prune_metric); the detector's per-epoch names are Ultralytics' (checked at the first epoch)
def check_inputs(p: Params, root: Path) -> list[space.Dim]:
    """Everything that can be refused before training: the space, the objective, the canonical data."""
    from wildtrain import families
    from wildtrain.layout import MANIFEST

    t = p.tune
    dims = space.parse(t.space, p)
    fam = families.get(space.family(dims))
    known = space.objectives(fam.name)
    if t.metric not in known:
        raise WildtrainError(f"params.yaml: tune.metric: '{t.metric}' is not a metric of metrics/eval{fam.suffix}.json "
                             f"(known: {', '.join(known)})")
    if fam.name in space.EPOCH_METRICS and t.pruner != "none" and t.prune_metric not in space.EPOCH_METRICS[fam.name]:
        raise WildtrainError(f"params.yaml: tune.prune_metric: '{t.prune_metric}' is not a per-epoch metric of the "
                             f"{fam.name} (known: {', '.join(space.EPOCH_METRICS[fam.name])})")
    if t.n_trials < 1 or t.timeout < 0 or t.prune_startup_trials < 0 or t.prune_warmup_epochs < 0:
        raise WildtrainError("params.yaml: tune: n_trials must be >= 1; timeout, prune_startup_trials and "
                             "prune_warmup_epochs >= 0")
    if not t.study or any(c in t.study for c in "/\\") or t.study.startswith("."):
        raise WildtrainError(f"params.yaml: tune.study: '{t.study}' must be a plain name (it names a folder)")
    needed = [f"{p.paths.raw}/{MANIFEST}", *{f"{p.paths.coco}/{s}.json" for s in ("train", "val", t.split)}]
    needed += {"detector": [f"{p.paths.yolo}/dataset.yaml"],
               "classifier": [f"{p.paths.crops}/{s}" for s in ("train", "val", t.split)]}.get(fam.name, [])
    for rel in needed:
        if not (root / rel).exists():
            raise WildtrainError(f"{rel} not found: tune reads the canonical data; run `dvc repro convert` first")
    return dims


def _parent_run(p: Params, root: Path, study) -> str:
    """The study's MLflow run (kept in the study, so a resumed study nests under the same run)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from wildtrain.tracking import mlflow_run
    from wildtrain.tracking.lineage import git_commit

    mlflow = mlflow_run.connect(p.tracking.experiment, root)
    client = MlflowClient()
    run_id = study.user_attrs.get(study_mod.PARENT_RUN_ATTR)
    if run_id:
        try:
            client.update_run(run_id, status="RUNNING")
            return run_id
        except MlflowException:  # the MLflow store was reset; start a new parent run
            pass
    t = p.tune
    experiment_id = mlflow.get_experiment_by_name(p.tracking.experiment).experiment_id
    run = client.create_run(experiment_id, run_name=f"tune-{t.study}",
                            tags={"optuna.study": t.study, "optuna.storage": study_mod.redact(t.storage),
                                  **git_commit(root)})
    run_id = run.info.run_id
    for key in ("metric", "split", "direction", "sampler", "seed", "pruner", "prune_metric"):
        client.log_param(run_id, f"tune.{key}", getattr(t, key))
    client.log_param(run_id, "tune.family", space.family(space.parse(t.space, p)))
    client.log_param(run_id, "tune.space", json.dumps(t.space, sort_keys=True)[:6000])
    study.set_user_attr(study_mod.PARENT_RUN_ATTR, run_id)
    return run_id


def _close_parent(p: Params, root: Path, run_id: str, summary: dict | None, status: str) -> None:
    from mlflow.tracking import MlflowClient

    from wildtrain.tracking import mlflow_run

    mlflow_run.connect(p.tracking.experiment, root)
    client = MlflowClient()
    if summary:
        for state, n in summary["trials"].items():
            client.log_metric(run_id, f"trials.{state}", n)
        if summary["best"]:
            client.log_metric(run_id, f"best.{summary['metric']}", summary["best"]["value"])
            client.set_tag(run_id, "best_trial", str(summary["best"]["number"]))
    client.set_terminated(run_id, status=status)


def _fail_dead(p: Params, root: Path, study, parent_run_id: str) -> None:
    from mlflow.tracking import MlflowClient

    from wildtrain.tracking import mlflow_run

    dead = study_mod.fail_dead_trials(study)
    if not dead:
        return
    mlflow = mlflow_run.connect(p.tracking.experiment, root)
    client = MlflowClient()
    experiment_id = mlflow.get_experiment_by_name(p.tracking.experiment).experiment_id
    for n in dead:
        child = trial_mod.child_run(client, experiment_id, parent_run_id, n)
        trial_mod.mark_child(client, child, "FAIL", "interrupted: its worker died")
    print(f"tune: marked interrupted trial(s) {', '.join(map(str, dead))} failed (their workers died)")


def work(p: Params, root: Path, worker: int = 0) -> None:
    """One worker: claim and run trials until the study has n_trials or the timeout passes.

    Trials are claimed under the storage's own lock (study.claim_lock), so workers on other machines that share
    nothing but tune.storage (and the MLflow server) never overshoot n_trials. A storage that stops answering
    stops the worker with one line; rerunning `wildtrain tune` resumes the study."""
    t = p.tune
    dims = space.parse(t.space, p)
    url = study_mod.storage_url(t.storage, root)
    try:
        study = study_mod.open_study(t, getattr(p, space.section(dims)), root, worker)
        parent = study.user_attrs.get(study_mod.PARENT_RUN_ATTR)
        if not parent:
            raise WildtrainError(f"tune: study '{t.study}' has no MLflow parent run; start it with `wildtrain tune`")
        start, failures = time.monotonic(), 0
        while not (t.timeout and time.monotonic() - start >= t.timeout):
            trial = study_mod.claim(study, t.n_trials, study_mod.claim_lock(url, t.study))
            if trial is None:
                return
            if trial_mod.run(p, root, study, trial, dims, parent) == "FAIL":
                failures += 1
                if failures >= t.n_trials:
                    print(f"tune: worker {worker} stops: {failures} of its trials failed", file=sys.stderr)
                    return
    except Exception as e:
        if isinstance(e, WildtrainError) or not study_mod.storage_error(e):
            raise
        raise study_mod.storage_down(t.storage, e) from None
    print(f"tune: worker {worker}: timeout of {t.timeout} s reached")


def _run_workers(root: Path, workers: int, first: int = 0) -> list[int]:
    """Worker subprocesses on the same storage; Ctrl-C is passed on so each records its trial."""
    cmd = [sys.executable, "-m", "wildtrain.cli", "tune", "--worker"]
    procs = [subprocess.Popen([*cmd, str(first + i)], cwd=root) for i in range(workers)]
    try:
        return [proc.wait() for proc in procs]
    except KeyboardInterrupt:
        # A terminal Ctrl-C reached the workers too; pass it on only to those still running after a while
        # (a second SIGINT could cut short a worker that is recording its trial as failed).
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGINT)
        for proc in procs:
            proc.wait()
        raise


def launch(p: Params, root: Path, workers: int = 1, apply: bool = False, first_worker: int = 0) -> dict:
    """`wildtrain tune`: run the study to n_trials, write its outputs, optionally apply the best trial.

    `first_worker`: the number of this machine's first worker (its sampler seed is tune.seed + number), so that
    machines sharing one storage do not propose the same parameters."""
    check_inputs(p, root)
    try:
        return _launch(p, root, workers, apply, first_worker)
    except Exception as e:
        if isinstance(e, WildtrainError) or not study_mod.storage_error(e):
            raise
        raise study_mod.storage_down(p.tune.storage, e) from None


def _launch(p: Params, root: Path, workers: int, apply: bool, first_worker: int) -> dict:
    t = p.tune
    section = space.section(space.parse(t.space, p))
    study = study_mod.open_study(t, getattr(p, section), root, create=True)
    parent = _parent_run(p, root, study)
    _fail_dead(p, root, study, parent)
    print(f"tune: study '{t.study}' on {study_mod.redact(t.storage)}: {study_mod.counts(study)}; "
          f"running to {t.n_trials} finished trials with {workers} worker(s)", flush=True)
    codes: list[int] = []
    try:
        if workers == 1:
            work(p, root, first_worker)
        else:
            codes = _run_workers(root, workers, first_worker)
    except BaseException:
        _close_parent(p, root, parent, None, "KILLED")
        raise
    interrupted = INTERRUPTED in codes
    summary = report.write(p, root, study)
    _close_parent(p, root, parent, summary, "KILLED" if interrupted else "FINISHED")
    c = summary["trials"]
    print(f"tune: {summary['total']} trials ({', '.join(f'{k} {v}' for k, v in sorted(c.items()))}) -> "
          f"{p.paths.metrics}/{report.SUMMARY}")
    if summary["best"]:
        b = summary["best"]
        print(f"tune: best trial {b['number']}: {t.metric} = {b['value']:.4f}; params in "
              f"{p.paths.metrics}/{report.BEST_PARAMS}. Apply with:\n  {summary['apply']}")
    if interrupted:
        raise KeyboardInterrupt
    bad = [f"worker {i} exited with {code}" for i, code in enumerate(codes) if code]
    if bad:
        raise WildtrainError(f"tune: {'; '.join(bad)} (see its error above)")
    if apply:
        code = report.apply(root, summary)
        if code:
            raise WildtrainError(f"tune --apply: `{summary['apply']}` failed (exit {code})")
    return summary
