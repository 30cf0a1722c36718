"""The team set-up for real: `make services` (PostgreSQL + an `mlflow server` on it, on loopback), Optuna workers that
share nothing but the storage URL claiming trials exactly, on PostgreSQL, sqlite and a JournalStorage file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from conftest import REPO, free_port, pipeline_env
from wildtrain import services as svc
from wildtrain.errors import WildtrainError

WORKER = Path(__file__).with_name("claim_worker.py")


def test_services_reuse_what_runs_and_refuse_a_taken_port_in_one_line(services, tmp_path):
    again = svc.up(services.folder, free_port(), free_port())  # other ports asked: the running pair is reused
    assert (again.pg_port, again.mlflow_port, again.password) == (services.pg_port, services.mlflow_port,
                                                                    services.password)
    assert svc.healthy(services.tracking_uri)
    with pytest.raises(WildtrainError, match=rf"port {services.pg_port} on 127.0.0.1 is taken"):
        svc.up(tmp_path / "other", services.pg_port, free_port())
    # the make target's command: one line, exit 2, no traceback
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    env = {**pipeline_env(REPO), "PG_PORT": str(services.pg_port), "MLFLOW_PORT": str(free_port())}
    out = subprocess.run([sys.executable, "-m", "wildtrain.services", "up"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    svc.down(tmp_path / ".services")
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0, out.stderr
    assert out.stderr.startswith(f"error: services: port {services.pg_port} on 127.0.0.1 is taken")


def storage_for(kind: str, services, tmp_path: Path) -> str:
    if kind == "postgresql":
        return services.optuna_storage
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'optuna.db'}"
    return f"journal:{tmp_path / 'optuna.journal'}"


@pytest.mark.parametrize("kind", ["postgresql", "sqlite", "journal"])
def test_workers_sharing_only_the_storage_claim_exactly_n_trials(kind, services, tmp_path, request):
    """Three processes race to claim trials that finish at once (the worst case for a count-then-ask race): the study
    ends with exactly n_trials COMPLETE + PRUNED, numbered 0..n-1, none RUNNING, none duplicated."""
    from wildtrain.tune import study as study_mod

    url, name, n = storage_for(kind, services, tmp_path), f"claims-{kind}-{request.node.name[-6:]}", 24
    optuna.create_study(study_name=name, storage=study_mod.open_storage(url), direction="maximize")
    env = pipeline_env(REPO)
    procs = [subprocess.Popen([sys.executable, str(WORKER), url, name, str(n), str(i)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    ran = [int(o[0].split()[-1]) for o in outs]
    trials = optuna.load_study(study_name=name, storage=study_mod.open_storage(url)).get_trials()
    states = [t.state.name for t in trials]
    assert sum(ran) == n and len(trials) == n, (ran, states)
    assert sorted(t.number for t in trials) == list(range(n))
    assert states.count("COMPLETE") + states.count("PRUNED") == n
    assert sum(1 for r in ran if r) >= 2  # they really shared the work


def restart_mlflow(services) -> None:
    svc.stop_mlflow(services.folder)
    svc.up(services.folder, services.pg_port, services.mlflow_port)


@pytest.mark.slow
def test_per_epoch_metrics_wait_for_a_server_that_went_away(services, tmp_path, monkeypatch):
    """Epochs logged while the MLflow server is down cost the training nothing and reach the run once it is back; a
    server still away when the training ends is one line (the metrics are not silently dropped)."""
    import time

    import mlflow
    from mlflow.tracking import MlflowClient

    from wildtrain.tracking.live import FLUSH_TIMEOUT, EpochLogger

    monkeypatch.setenv("MLFLOW_TRACKING_URI", services.tracking_uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(services.tracking_uri)
    try:
        mlflow.set_experiment("buffered")
        run_ids = []
        for _ in range(2):
            with mlflow.start_run() as run:
                run_ids.append(run.info.run_id)
        logger = EpochLogger(tmp_path / "live", run_ids[0])
        logger.log_epoch(0, {"loss": 3.0})
        svc.stop_mlflow(services.folder)
        t0 = time.perf_counter()
        for epoch in (1, 2, 3):
            logger.log_epoch(epoch, {"loss": 3.0 - epoch})
        assert time.perf_counter() - t0 < 1.0  # the epochs did not wait for the server
        restart_mlflow(services)
        logger.close()
        history = MlflowClient().get_metric_history(run_ids[0], "loss")
        assert sorted((m.step, m.value) for m in history) == [(0, 3.0), (1, 2.0), (2, 1.0), (3, 0.0)]

        logger = EpochLogger(tmp_path / "live2", run_ids[1])
        svc.stop_mlflow(services.folder)
        logger.log_epoch(0, {"loss": 1.0, "acc": 0.5})
        monkeypatch.setenv(FLUSH_TIMEOUT, "3")
        with pytest.raises(WildtrainError, match=r"MLflow: 2 per-epoch metric values of run .* could not reach"):
            logger.close()
    finally:
        restart_mlflow(services)
        mlflow.set_tracking_uri(None)
