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
