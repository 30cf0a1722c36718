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
import gate_tables
from wildtrain.evaluate.detection_table import DetectionTable
from gate_tables import hits
from wildtrain.evaluate import bootstrap
from wildtrain.registry import CHALLENGER, CHAMPION, TABLE_TAG, Bootstrap, gate, register_model

SAME, OTHER = "e" * 64, "f" * 64
FAST = Bootstrap(resamples=300, seed=0)


def champion(version: str, value: float | None, evaluation: str = SAME):
    tags = {"evaluation_hash": evaluation, **({"map50_95": str(value)} if value is not None else {})}
    return SimpleNamespace(version=version, tags=tags)


def never(mv):
    raise AssertionError("re-evaluated a champion whose table is there")


def decide(ours: list[bool], theirs: list[bool] | None, margin: float = 0.0, evaluation: str = SAME,
           reevaluate=never):
    """The gate between a challenger finding `ours` and a champion finding `theirs` (None: no champion)."""
    mine = gate_tables.table(ours)
    value = bootstrap.identity(mine)["map50_95"]
    mv = None if theirs is None else champion("3", 0.5, evaluation)
    return gate("map50_95", value, SAME, mine, mv, lambda _: gate_tables.table(theirs),
                reevaluate, Bootstrap(FAST.resamples, FAST.seed, margin))


def test_no_champion_promotes():
    assert decide(hits(10), None).champion


def test_a_clear_gain_is_promoted_with_its_interval():
    d = decide(hits(36), hits(20))  # 36 of 40 test images right instead of 20
    assert d.champion and "beyond noise; becomes champion" in d.reason
    low, high = d.delta_ci95
    assert 0 < low < d.delta < high and d.delta == pytest.approx(d.delta)
    assert d.champion_metric_before == pytest.approx(bootstrap.identity(gate_tables.table(hits(20)))["map50_95"])


def test_a_gain_within_noise_stays_challenger():
    ours = hits(24)
    ours[3] = ours[7] = False  # four more images right, two others wrong
    d = decide(ours, hits(20))
    assert d.delta > 0 and not d.champion
    assert d.delta_ci95[0] <= 0 <= d.delta_ci95[1]
    assert "within noise; stays challenger" in d.reason and f"gain {d.delta:+.4f} [" in d.reason


def test_a_tie_stays_challenger_and_says_so():
    d = decide(hits(20), hits(20))
    assert not d.champion and d.delta == 0.0 and d.delta_ci95 == [0.0, 0.0]
    assert "a tie" in d.reason and "stays challenger" in d.reason


def test_a_loss_stays_challenger():
    d = decide(hits(10), hits(30))
    assert not d.champion and d.delta_ci95[1] < 0 and "worse than the champion beyond noise" in d.reason


def test_the_margin_is_respected():
    clear = decide(hits(36), hits(20))
    low = clear.delta_ci95[0]
    assert not decide(hits(36), hits(20), margin=low + 0.01).champion
    assert "not above the margin" in decide(hits(36), hits(20), margin=low + 0.01).reason
    assert decide(hits(36), hits(20), margin=low - 0.01).champion


def test_a_champion_without_its_table_is_reevaluated():
    """Same test set, but the champion was registered before tables were logged: it is scored here."""
    seen = []

    def rescore(mv):
        seen.append(mv.version)
        t = gate_tables.table(hits(20))
        return bootstrap.identity(t)["map50_95"], t

    mine = gate_tables.table(hits(36))
    d = gate("map50_95", bootstrap.identity(mine)["map50_95"], SAME, mine, champion("3", 0.9), lambda _: None,
             rescore, FAST)
    assert seen == ["3"] and d.champion and "its per-unit table is missing" in d.reason
    assert d.reevaluated["version"] == 3 and d.reevaluated["recorded"] == 0.9


def test_gate_reevaluates_a_champion_scored_elsewhere():
    def rescore(mv):
        t = gate_tables.table(hits(38))
        return bootstrap.identity(t)["map50_95"], t

    d = decide(hits(20), None)
    assert d.champion
    mine = gate_tables.table(hits(20))

    def must_not_load(mv):
        raise AssertionError("loaded the table of another evaluation")

    d = gate("map50_95", bootstrap.identity(mine)["map50_95"], SAME, mine, champion("3", 0.1, OTHER), must_not_load,
             rescore, FAST)
    assert not d.champion and "re-evaluated on this test set" in d.reason  # its recorded 0.1 was elsewhere
    assert d.reevaluated["recorded"] == 0.1 and d.reevaluated["evaluation_hash"] == SAME


def test_gate_refuses_when_the_champion_cannot_be_reevaluated():
    def impossible(mv):
        raise WildtrainError("the model's classes differ from the split's")

    d = decide(hits(39), hits(1), evaluation=OTHER, reevaluate=impossible)
    assert not d.champion and "cannot be re-evaluated" in d.reason and "classes differ" in d.reason


def test_tables_of_other_test_units_do_not_compare():
    mine = gate_tables.table(hits(30))
    d = gate("map50_95", 0.7, SAME, mine, champion("3", 0.5), lambda _: gate_tables.table(hits(5, total=41)), never,
             FAST)
    assert not d.champion and "different test units" in d.reason


def test_a_gate_metric_without_a_table_is_one_line_before_the_registry_is_touched(tmp_path):
    table, value = gate_tables.table_file(tmp_path, hits(20), SAME)
    for metric, message in (("map_small", "'map_small' has no per-image table.*map50_95"),
                            ("count_bias", "'count_bias' is signed")):
        with pytest.raises(WildtrainError, match=message):
            register_model(run_id="0" * 32, name="det", gate_metric=metric,
                           metrics={"map50_95": value, "map_small": 0.1, "count_bias": 0.0}, evaluation=SAME, tags={},
                           model_dir=model_folder(tmp_path), artifacts=[], pip_requirements=[], table_file=table,
                           table_type=DetectionTable, reevaluate=never)


def model_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    (folder / "model.json").write_text(json.dumps({"schema": 1, "family": "detector"}))
    (folder / "model.pt").write_bytes(b"not really weights")
    return folder


def register(run_id: str, folder: Path, found: list[bool], evaluation: str = SAME, reevaluate=never, name="det",
             margin: float = 0.0):
    """Register a model that finds `found` of the test images (its table written beside the folder)."""
    table, value = gate_tables.table_file(folder.parent / f"tables-{run_id}", found, evaluation)
    return register_model(run_id=run_id, name=name, gate_metric="map50_95",
                          metrics={"map50_95": value, "map50": value + 0.1}, evaluation=evaluation,
                          tags={"dataset_hash": "abc"}, model_dir=folder, artifacts=[], pip_requirements=[],
                          table_file=table, table_type=DetectionTable, settings=Bootstrap(FAST.resamples, FAST.seed, margin),
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
    # v1 first; v2 worse; v3 a clear gain over v1 (from its logged table); v4 the same predictions as v3 (a tie)
    for found in (hits(20), hits(12), hits(36), hits(36)):
        with mlflow.start_run() as run:
            pass
        out = register(run.info.run_id, folder, found)
        decisions.append((out["version"], out["decision"], out["aliases"]))
        json.dumps(out)  # register.json must be serializable
    assert decisions == [(1, "champion", [CHALLENGER, CHAMPION]), (2, "challenger", [CHALLENGER]),
                         (3, "champion", [CHALLENGER, CHAMPION]), (4, "challenger", [CHALLENGER])]
    assert out["delta"] == 0.0 and out["delta_ci95"] == [0.0, 0.0] and "a tie" in out["reason"]
    client = MlflowClient()
    v2 = client.get_model_version("det", "2")
    assert v2.aliases == [] and v2.tags["evaluation_hash"] == SAME and v2.tags["gate_decision"] == "challenger"
    assert float(v2.tags["gate_delta"]) < 0 and v2.tags[TABLE_TAG] == "evaluation/v2/test_tables.npz"
    v3 = client.get_model_version("det", "3")
    assert v3.tags["gate_decision"] == "champion" and json.loads(v3.tags["gate_delta_ci95"])[0] > 0
    assert client.get_run(v2.run_id).data.metrics["eval/map50_95"] == pytest.approx(float(v2.tags["map50_95"]))

    # A new test set: the champion (v3) is re-evaluated on it from its own registered model folder.
    seen = []

    def rescore(downloaded: Path):
        seen.append(json.loads((downloaded / "model.json").read_text())["family"])
        t = gate_tables.table(hits(30))
        return bootstrap.identity(t)["map50_95"], t

    with mlflow.start_run() as run:
        pass
    out = register(run.info.run_id, folder, hits(31), evaluation=OTHER, reevaluate=rescore)
    assert seen == ["detector"] and out["decision"] == "challenger" and "within noise" in out["reason"]
    assert out["champion_reevaluated"]["version"] == 3 and out["champion_reevaluated"]["evaluation_hash"] == OTHER
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
            register("0" * 32, model_folder(tmp_path), hits(20))
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
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
             # as wildtrain.services runs it: no job runner (huey consumers for GenAI jobs, never submitted here),
             # which otherwise costs CPU to start and seconds to stop
             "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
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
        assert register(run_ids[0], folder, hits(10))["aliases"] == [CHALLENGER, CHAMPION]

        proxy.failing = "registered-models/alias"  # the server goes away while aliases are being set
        with pytest.raises(WildtrainError, match="registering 'det' failed.*version removed"):
            register(run_ids[1], folder, hits(36))
        assert proxy.failed >= 1
        client = MlflowClient()
        assert [v.version for v in client.search_model_versions("name='det'")] == ["1"]  # no half-registered v2
        assert client.get_registered_model("det").aliases == {CHALLENGER: "1", CHAMPION: "1"}

        proxy.failing = None  # back: a rerun completes the registration
        out = register(run_ids[2], folder, hits(36))
        assert out["decision"] == "champion" and out["previous_champion_version"] == 1
    finally:
        proxy.shutdown()
        mlflow.set_tracking_uri(None)
        shutil.rmtree(tmp_path / "mlruns", ignore_errors=True)
