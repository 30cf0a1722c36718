"""The team set-up for real: `make services` (PostgreSQL + an `mlflow server` on it, on loopback), Optuna workers that
share nothing but the storage URL claiming trials exactly, on PostgreSQL, sqlite and a JournalStorage file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

import gate_tables
from wildtrain.evaluate.detection_table import DetectionTable
from conftest import REPO, free_port, pipeline_env
from gate_tables import hits
from wildtrain import services as svc
from wildtrain.errors import WildtrainError

WORKER = Path(__file__).with_name("claim_worker.py")


def test_services_reuse_what_runs_and_refuse_a_taken_port_in_one_line(services, tmp_path):
    again = svc.up(services.folder, free_port(), free_port())  # other ports asked: the running pair is reused
    assert (again.pg_port, again.mlflow_port) == (services.pg_port, services.mlflow_port)
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


def model_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.json").write_text('{"schema": 1, "family": "detector"}')
    (folder / "model.pt").write_bytes(b"not really weights")
    return folder


@pytest.mark.slow
def test_the_mlflow_server_stops_and_comes_back(services, tmp_path, monkeypatch):
    """The real server (PostgreSQL backend) stopped, then started again:
    - epochs logged meanwhile cost the training nothing and reach the run once it is back;
    - a training that ends while it is still away is one line (its metrics are not silently dropped);
    - a registration meanwhile is one line, with no new version and no alias changed; once it is back, a rerun
      completes the registration."""
    import time

    import mlflow
    from mlflow.tracking import MlflowClient

    from wildtrain.registry import CHALLENGER, CHAMPION, register_model
    from wildtrain.tracking.live import FLUSH_TIMEOUT, EpochLogger

    def register(run_id: str, found: int) -> dict:
        """A model that finds `found` of 40 test images (gate_tables); 16 -> 36 is a gain beyond noise."""
        table, value = gate_tables.table_file(tmp_path / f"tables-{found}", hits(found), "e" * 64)
        return register_model(run_id=run_id, name="team-det", gate_metric="map50_95", metrics={"map50_95": value},
                              evaluation="e" * 64, tags={}, model_dir=folder, artifacts=[], pip_requirements=[],
                              table_file=table, table_type=DetectionTable, reevaluate=lambda mv: (0.0, None))

    for key, value in services.client_env().items():  # the admin: this test is about outages, not roles
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(services.tracking_uri)
    folder = model_folder(tmp_path)
    try:
        mlflow.set_experiment("outage")
        run_ids = []
        for _ in range(3):
            with mlflow.start_run() as run:
                run_ids.append(run.info.run_id)
        assert register(run_ids[2], 16)["aliases"] == [CHALLENGER, CHAMPION]
        logger = EpochLogger(tmp_path / "live", run_ids[0])
        logger.log_epoch(0, {"loss": 3.0})

        svc.stop_mlflow(services.folder)
        t0 = time.perf_counter()
        for epoch in (1, 2, 3):
            logger.log_epoch(epoch, {"loss": 3.0 - epoch})
        assert time.perf_counter() - t0 < 1.0  # the epochs did not wait for the server
        other = EpochLogger(tmp_path / "live2", run_ids[1])
        other.log_epoch(0, {"loss": 1.0, "acc": 0.5})
        monkeypatch.setenv(FLUSH_TIMEOUT, "1")  # the server is stopped: no wait long enough could send them
        with pytest.raises(WildtrainError, match=r"MLflow: 2 per-epoch metric values of run .* could not reach"):
            other.close()
        with pytest.raises(WildtrainError, match=r"cannot look up the champion of 'team-det'.*no alias changed"):
            register(run_ids[2], 36)

        monkeypatch.setenv(FLUSH_TIMEOUT, "120")
        restart_mlflow(services)
        logger.close()
        client = MlflowClient()
        history = client.get_metric_history(run_ids[0], "loss")
        assert sorted((m.step, m.value) for m in history) == [(0, 3.0), (1, 2.0), (2, 1.0), (3, 0.0)]
        assert [v.version for v in client.search_model_versions("name='team-det'")] == ["1"]
        assert client.get_registered_model("team-det").aliases == {CHALLENGER: "1", CHAMPION: "1"}
        out = register(run_ids[2], 36)
        assert (out["version"], out["decision"], out["previous_champion_version"]) == (2, "champion", 1)
    finally:
        if not svc.healthy(services.tracking_uri):
            restart_mlflow(services)
        mlflow.set_tracking_uri(None)


@pytest.mark.slow
def test_the_classifier_chain_against_the_server_that_stops_mid_training(pipeline_repo, services, tmp_path,
                                                                        monkeypatch):
    """The pipeline's own stages as the CI bot (a user of the role that may promote through the gate) at the
    authenticated, PostgreSQL-backed server: the server stops after the first epoch and comes back; the training
    finishes with every epoch on the server; evaluate and register follow (run, artifacts in the proxied store,
    registry, aliases); `mlflow models serve` loads @champion through it."""
    from mlflow.tracking import MlflowClient

    from conftest import stop, wait_for_http
    from test_predict import b64, post

    ws = pipeline_repo.clone(tmp_path / "repo")
    svc.add_user(services, "ci-bot", "wildtrain-ci-promote")
    env = {**ws.env, **services.client_env("ci-bot")}
    proc = subprocess.Popen(["dvc", "repro", "-s", "-f", "train_classifier"], cwd=ws.path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:  # the stage prints a line per epoch
        lines.append(line)
        if line.startswith("epoch 1/"):
            svc.stop_mlflow(services.folder)
            break
    try:
        assert not svc.healthy(services.tracking_uri), "".join(lines)[-3000:]
    finally:
        svc.up(services.folder, services.pg_port, services.mlflow_port)
    out = "".join(lines) + proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, out[-3000:]
    assert "Traceback" not in out
    card = json.loads((ws.path / "models_classifier/model.json").read_text())
    run_id, epochs = card["training"]["mlflow_run_id"], card["training"]["epochs_completed"]
    for key, value in services.client_env().items():  # the test reads back as the admin
        monkeypatch.setenv(key, value)
    client = MlflowClient(services.tracking_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["model_sha256"] == card["hashes"]["weights_sha256"]
    assert [m.step for m in client.get_metric_history(run_id, "val/f1_macro")] == list(range(epochs))

    # the same weights as the fixture's (bit-identical retraining), so its evaluation stands; register on the server
    done = subprocess.run(["dvc", "repro", "-s", "-f", "register_classifier"], cwd=ws.path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    reg = json.loads((ws.path / "metrics/register_classifier.json").read_text())
    assert reg["run_id"] == run_id and reg["decision"] == "champion" and reg["aliases"] == ["challenger", "champion"]
    mv = client.get_model_version_by_alias(reg["model_name"], "champion")
    assert int(mv.version) == reg["version"] and mv.tags["evaluation_hash"] == reg["evaluation_hash"]
    published = {a.path for a in client.list_artifacts(run_id, f"publish/v{reg['version']}")}
    assert f"publish/v{reg['version']}/model.onnx" in published
    # the version's files went through the server into its proxied store, none into the clone's folder
    assert [f for f in (services.folder / "artifacts").rglob("model.onnx") if run_id in str(f)]
    assert not [f for f in ws.path.rglob("model.onnx") if run_id in str(f)]

    port = free_port()
    log = open(tmp_path / "serve.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m",
                               f"models:/{reg['model_name']}@champion", "--env-manager", "local", "-h", "127.0.0.1",
                               "-p", str(port)], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ping", server)
        crop = sorted((ws.path / "data/crops/test").rglob("*.png"))[0]
        status, body = post(f"http://127.0.0.1:{port}/invocations",
                            {"dataframe_split": {"columns": ["image"], "data": [[b64(crop.read_bytes())]]}})
        assert status == 200, body
        assert body["predictions"][0]["label"] in card["class_names"]
    finally:
        stop(server)


@pytest.mark.slow
def test_three_workers_on_postgresql_survive_its_outage_with_exact_accounting(pipeline_repo, services, tmp_path):
    """`wildtrain tune --workers 3` on the PostgreSQL storage; PostgreSQL stops while all three train: each worker
    stops with one line, no traceback. After a restart, the same command resumes: the cut-short trials are FAIL and
    the study ends with exactly n_trials COMPLETE + PRUNED, none lost or duplicated."""
    import time

    import yaml

    from wildtrain.tune import study as study_mod

    ws = pipeline_repo.clone(tmp_path / "repo")
    n_trials, study_name = 3, "team-outage"

    def set_train(**train) -> None:
        raw = yaml.safe_load((ws.path / "params.yaml").read_text())
        raw["train"].update(imgsz=64, batch=8, workers=0, close_mosaic=0, **train)
        raw["tune"].update(study=study_name, storage=services.optuna_storage, n_trials=n_trials, pruner="none",
                           space={"train.lr0": {"type": "float", "low": 0.001, "high": 0.05, "log": True}})
        (ws.path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))

    def trials(storage):
        return optuna.load_study(study_name=study_name, storage=storage).get_trials()

    set_train(epochs=30)
    # one storage for the polling below: opening one per poll (engine, tables, alembic check) cost ~1 s of CPU each
    watch = study_mod.open_storage(services.optuna_storage)
    proc = subprocess.Popen(["python", "-m", "wildtrain.cli", "tune", "--workers", "3"], cwd=ws.path, env=ws.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # all three workers inside a trial's training loop
            try:
                running = [t for t in trials(watch) if t.state.name == "RUNNING" and t.intermediate_values]
            except KeyError:
                running = []
            if len(running) == 3 or proc.poll() is not None:
                break
            time.sleep(1)
        assert len(running) == 3, proc.communicate()[1][-3000:] if proc.poll() is not None else "no 3 trials"
        svc.stop_postgres(services.folder)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        svc.up(services.folder, services.pg_port, services.mlflow_port)
    assert proc.returncode != 0 and "Traceback" not in err, err[-3000:]
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert sum("stopped answering" in ln for ln in errors) >= 3, err[-3000:]  # one line per worker

    set_train(epochs=1)
    again = subprocess.run(["python", "-m", "wildtrain.cli", "tune", "--workers", "3"], cwd=ws.path, env=ws.env,
                           capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    done = trials(study_mod.open_storage(services.optuna_storage))
    states = [t.state.name for t in done]
    assert sorted(t.number for t in done) == list(range(len(done)))  # none lost, none duplicated
    assert states.count("COMPLETE") + states.count("PRUNED") == n_trials and "RUNNING" not in states
    cut = [t for t in done if t.state.name == "FAIL"]
    assert len(cut) == 3 and all("died" in t.user_attrs["error"] for t in cut)
    summary = json.loads((ws.path / "metrics/tune.json").read_text())
    assert summary["total"] == n_trials + 3 and summary["trials"]["FAIL"] == 3


def test_a_trial_whose_worker_died_on_another_machine_is_failed_by_its_missing_heartbeat(services, monkeypatch):
    """The local pid check cannot see a worker on another machine; its trial's heartbeats stop, and after the grace
    period (4 beats) the next claim anywhere fails it, so the study is not stuck short of n_trials."""
    import time

    from wildtrain.tune import study as study_mod

    monkeypatch.setenv(study_mod.HEARTBEAT, "1")
    url, name = services.optuna_storage, "stale-heartbeat"
    study = optuna.create_study(study_name=name, storage=study_mod.open_storage(url), direction="maximize")
    trial = study_mod.claim(study, 1, study_mod.claim_lock(url, name))
    study._storage.set_trial_user_attr(trial._trial_id, "worker_host", "another-machine")
    with study_mod.heartbeat(study, trial):
        time.sleep(1.5)  # it ran for a while, then its machine went away
    assert study_mod.claim(study, 1, study_mod.claim_lock(url, name)) is None  # still claimed: heartbeat fresh
    time.sleep(4.5)
    again = study_mod.claim(study, 1, study_mod.claim_lock(url, name))
    assert again is not None and [t.state.name for t in study.get_trials()] == ["FAIL", "RUNNING"]
