"""The alias gate, against a real MLflow registry: a sqlite store, and a real `mlflow server` behind a proxy that
fails on demand (a tracking server going away mid-registration)."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import free_port, stop, wait_for_http
from wildtrain.errors import WildtrainError
from wildtrain.registry import CHALLENGER, CHAMPION, gate, register_model

SAME, OTHER = "e" * 64, "f" * 64


def champion(version: str, value: float | None, evaluation: str = SAME):
    tags = {"evaluation_hash": evaluation, **({"map50_95": str(value)} if value is not None else {})}
    return SimpleNamespace(version=version, tags=tags)


def never(mv):
    raise AssertionError("re-evaluated a champion scored on the same test set")


def test_gate_rules():
    assert gate("map50_95", 0.2, SAME, None, never).champion
    assert gate("map50_95", 0.5, SAME, champion("3", 0.5), never).champion  # ties promote: "at least"
    d = gate("map50_95", 0.4, SAME, champion("3", 0.5), never)
    assert not d.champion and "stays challenger" in d.reason and d.reevaluated is None


def test_gate_reevaluates_a_champion_scored_elsewhere():
    d = gate("map50_95", 0.4, SAME, champion("3", 0.9, OTHER), lambda mv: 0.3)
    assert d.champion and d.champion_metric_before == 0.3 and "re-evaluated on this test set" in d.reason
    assert d.reevaluated == {"version": 3, "map50_95": 0.3, "evaluation_hash": SAME, "recorded": 0.9}
    d = gate("map50_95", 0.4, SAME, champion("3", 0.1, OTHER), lambda mv: 0.45)
    assert not d.champion  # its recorded 0.1 was on another test set; here it scores 0.45


def test_gate_refuses_when_the_champion_cannot_be_reevaluated():
    def impossible(mv):
        raise WildtrainError("the model's classes differ from the split's")

    d = gate("map50_95", 0.99, SAME, champion("3", 0.1, OTHER), impossible)
    assert not d.champion and "cannot be re-evaluated" in d.reason and "classes differ" in d.reason


def model_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.json").write_text(json.dumps({"schema": 1, "family": "detector"}))
    (folder / "model.pt").write_bytes(b"not really weights")
    return folder


def register(run_id: str, folder: Path, value: float, evaluation: str = SAME, reevaluate=never, name="det"):
    return register_model(run_id=run_id, name=name, gate_metric="map50_95",
                          metrics={"map50_95": value, "map50": value + 0.1}, evaluation=evaluation,
                          tags={"dataset_hash": "abc"}, model_dir=folder, artifacts=[], pip_requirements=[],
                          reevaluate=reevaluate)


@pytest.mark.slow
def test_versions_aliases_and_reevaluation_on_sqlite(tmp_path, monkeypatch):
    import mlflow
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)  # MLflow's sqlite store puts artifacts in ./mlruns
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("t")
    folder = model_folder(tmp_path)
    decisions = []
    for value in (0.30, 0.20, 0.35):
        with mlflow.start_run() as run:
            pass
        out = register(run.info.run_id, folder, value)
        decisions.append((out["version"], out["decision"], out["aliases"]))
        json.dumps(out)  # register.json must be serializable
    assert decisions == [(1, "champion", [CHALLENGER, CHAMPION]), (2, "challenger", [CHALLENGER]),
                         (3, "champion", [CHALLENGER, CHAMPION])]
    client = MlflowClient()
    v2 = client.get_model_version("det", "2")
    assert v2.aliases == [] and v2.tags["map50_95"] == "0.2" and v2.tags["evaluation_hash"] == SAME
    assert client.get_run(v2.run_id).data.metrics["eval/map50_95"] == pytest.approx(0.2)

    # A new test set: the champion (v3) is re-evaluated on it from its own registered model folder.
    seen = []

    def rescore(downloaded: Path) -> float:
        seen.append(json.loads((downloaded / "model.json").read_text())["family"])
        return 0.25

    with mlflow.start_run() as run:
        pass
    out = register(run.info.run_id, folder, 0.24, evaluation=OTHER, reevaluate=rescore)
    assert seen == ["detector"] and out["decision"] == "challenger"
    assert out["champion_reevaluated"] == {"version": 3, "map50_95": 0.25, "evaluation_hash": OTHER, "recorded": 0.35}
    assert str(client.get_model_version_by_alias("det", CHAMPION).version) == "3"


def test_a_registry_that_does_not_answer_is_not_no_champion(tmp_path, monkeypatch):
    """Only "no such model/alias" means no champion; a dead server stops registration with one line."""
    import mlflow

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    mlflow.set_tracking_uri(f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(WildtrainError, match="cannot look up the champion of 'det'.*no alias changed"):
            register("0" * 32, model_folder(tmp_path), 0.5)
    finally:
        mlflow.set_tracking_uri(None)


class FlakyProxy(http.server.ThreadingHTTPServer):
    """Forwards to an MLflow server; while `failing` names a path fragment, such requests get a 503."""

    def __init__(self, backend: str):
        self.backend, self.failing, self.failed = backend, None, 0
        super().__init__(("127.0.0.1", 0), _Forward)


class _Forward(http.server.BaseHTTPRequestHandler):
    def _relay(self):
        proxy: FlakyProxy = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if proxy.failing and proxy.failing in self.path:
            proxy.failed += 1
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        req = urllib.request.Request(proxy.backend + self.path, data=body or None, method=self.command,
                                     headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                status, headers, data = r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            status, headers, data = e.code, e.headers, e.read()
        self.send_response(status)
        for k, v in headers.items():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _relay

    def log_message(self, *args):
        pass


@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` (sqlite backend, proxied artifacts) on loopback, stopped at the end."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination",
         str(tmp_path / "artifacts"), "--workers", "1"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/health", server)
    yield url
    stop(server)


@pytest.mark.slow
def test_a_server_failing_mid_registration_changes_no_alias(mlflow_server, tmp_path, monkeypatch):
    import mlflow
    from mlflow.tracking import MlflowClient

    proxy = FlakyProxy(mlflow_server)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{proxy.server_address[1]}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(uri)
    try:
        mlflow.set_experiment("t")
        folder = model_folder(tmp_path)
        run_ids = []
        for _ in range(3):
            with mlflow.start_run() as run:
                run_ids.append(run.info.run_id)
        assert register(run_ids[0], folder, 0.3)["aliases"] == [CHALLENGER, CHAMPION]

        proxy.failing = "registered-models/alias"  # the server goes away while aliases are being set
        with pytest.raises(WildtrainError, match="registering 'det' failed.*version removed"):
            register(run_ids[1], folder, 0.5)
        assert proxy.failed >= 1
        client = MlflowClient()
        assert [v.version for v in client.search_model_versions("name='det'")] == ["1"]  # no half-registered v2
        assert client.get_registered_model("det").aliases == {CHALLENGER: "1", CHAMPION: "1"}

        proxy.failing = None  # back: a rerun completes the registration
        out = register(run_ids[2], folder, 0.5)
        assert out["decision"] == "champion" and out["previous_champion_version"] == 1
    finally:
        proxy.shutdown()
        mlflow.set_tracking_uri(None)
        shutil.rmtree(tmp_path / "mlruns", ignore_errors=True)
