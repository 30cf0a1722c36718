"""The team server lets no one in where they don't belong: anonymous requests are 401, roles decide who moves
`champion`, no secret is on a command line or in a log or in params.yaml, and PostgreSQL's roles each own only their
database. On the real pair of `make services` (the session fixture `services`)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

import gate_tables
from conftest import pipeline_env
from gate_tables import hits
from wildtrain import services as svc
from wildtrain.errors import WildtrainError


def call(uri: str, path: str, auth: tuple[str, str] | None = None, body: dict | None = None) -> int:
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    req = urllib.request.Request(uri + path, data=json.dumps(body).encode() if body is not None else None,
                                 headers=headers, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def all_secrets(services) -> list[str]:
    files = [services.folder / "pg_password", services.folder / "admin_password", services.folder / "flask_secret",
             *services.folder.glob("*.password"), *(services.folder / "users").glob("*")]
    return [f.read_text().strip() for f in files if f.is_file()]


def test_anonymous_requests_are_401_and_secrets_stay_in_0600_files(services):
    search = "/api/2.0/mlflow/experiments/search?max_results=1"
    assert call(services.tracking_uri, search) == 401
    assert call(services.tracking_uri, search, ("admin", "wrong")) == 401
    assert call(services.tracking_uri, search, services.admin) == 200
    assert call(services.tracking_uri, "/health") == 200

    svc.add_user(services, "someone", "wildtrain-reader")
    secrets = all_secrets(services)
    assert len(secrets) >= 6 and all(len(s) >= 20 for s in secrets)
    for path in [*services.folder.glob("*password*"), *services.folder.glob("*.pgpass"), services.folder / "auth.ini",
                 services.folder / "flask_secret", *(services.folder / "users").glob("*")]:
        assert path.stat().st_mode & 0o077 == 0, path  # nobody but the owner reads them

    ps = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True, check=True).stdout
    assert "mlflow" in ps and "postgres" in ps
    logs = (services.folder / "mlflow.log").read_text(errors="replace") + \
        (services.folder / "postgres" / "server.log").read_text(errors="replace")
    for secret in secrets:
        assert secret not in ps and secret not in logs
    ours = [ln for ln in ps.splitlines() if str(services.mlflow_port) in ln or str(services.folder) in ln]
    assert any("basic-auth" in ln for ln in ours), ours
    assert not [ln for ln in ours if "--backend-store-uri" in ln or "postgresql://" in ln], ours


def test_make_services_prints_where_the_secrets_are_not_the_secrets(services, tmp_path, capsys, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    (project / "dvc.yaml").write_text("stages: {}\n")
    (project / ".services").symlink_to(services.folder)
    monkeypatch.chdir(project)
    monkeypatch.delenv(svc.HOST_ENV, raising=False)
    assert svc.main(["up"]) == 0  # the running pair is reused
    out, err = capsys.readouterr()
    assert "admin_password" in out and f"PGPASSFILE={services.optuna_passfile}" in out
    assert f"tune.storage: postgresql://wildtrain_optuna@127.0.0.1:{services.pg_port}/optuna" in out
    for secret in all_secrets(services):
        assert secret not in out and secret not in err


def test_postgresql_roles_each_own_only_their_database(services):
    import psycopg

    def connect(role: str, db: str):  # the role's own password, whatever the database
        return psycopg.connect(host="127.0.0.1", port=services.pg_port, user=role, dbname=db, connect_timeout=10,
                               password=(services.folder / f"{role}.password").read_text().strip())

    with connect("wildtrain_optuna", "optuna") as con:
        owner = con.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'optuna'").fetchone()[0]
        assert owner == "wildtrain_optuna"
        assert con.execute("SELECT rolsuper OR rolcreatedb OR rolcreaterole FROM pg_roles "
                           "WHERE rolname = current_user").fetchone()[0] is False
    with connect("wildtrain_mlflow", "mlflow") as con:  # MLflow's schema belongs to its role
        owners = {r[0] for r in con.execute("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")}
        assert owners == {"wildtrain_mlflow"}
    for role, db in (("wildtrain_optuna", "mlflow"), ("wildtrain_optuna", "mlflow_auth"), ("wildtrain_mlflow", "optuna"),
                     ("wildtrain_optuna", "postgres")):
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            connect(role, db).close()


def model_folder(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    (folder / "model.json").write_text('{"schema": 1, "family": "detector"}')
    (folder / "model.pt").write_bytes(b"not really weights")
    return folder


def test_roles_decide_who_moves_champion_and_a_refusal_moves_no_alias(services, tmp_path, monkeypatch):
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from wildtrain.evaluate.detection_table import DetectionTable
    from wildtrain.registry import register_model

    users = {name: svc.add_user(services, name, role).read_text().strip() for name, role in
             (("maint", "wildtrain-maintainer"), ("bot", "wildtrain-ci"), ("bot-promote", "wildtrain-ci-promote"),
              ("reader", "wildtrain-reader"))}
    monkeypatch.setenv("MLFLOW_TRACKING_URI", services.tracking_uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(services.tracking_uri)
    folder = model_folder(tmp_path)
    name = "roles-det"

    def as_user(user: str) -> None:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", users[user])

    def run() -> str:
        mlflow.set_experiment("roles")
        with mlflow.start_run() as r:
            return r.info.run_id

    def register(run_id: str, found: int) -> dict:
        """A model that finds `found` of 40 test images (gate_tables): 16 -> 36 is a gain beyond noise."""
        table, value = gate_tables.table_file(tmp_path / f"tables-{run_id}-{found}", hits(found), "e" * 64)
        return register_model(run_id=run_id, name=name, gate_metric="map50_95", metrics={"map50_95": value},
                              evaluation="e" * 64, tags={}, model_dir=folder, artifacts=[], pip_requirements=[],
                              table_file=table, table_type=DetectionTable, reevaluate=lambda mv: (0.0, None))

    def aliases() -> dict:
        as_user("maint")
        return MlflowClient().get_registered_model(name).aliases

    try:
        # the CI bot logs runs and registers, but the gate's promotion of its first version is refused: one line
        as_user("bot")
        bot_run = run()
        with pytest.raises(WildtrainError, match=r"^MLflow registry: user 'bot' may not register or promote "
                                                 r"'roles-det' .*Permission denied.*; no alias moved$"):
            register(bot_run, 12)
        assert aliases() == {}

        as_user("maint")
        assert register(run(), 16)["aliases"] == ["challenger", "champion"]
        assert aliases() == {"challenger": "2", "champion": "2"}

        as_user("bot")  # a worse version: a challenger, which the bot may set
        out = register(bot_run, 8)
        assert (out["decision"], out["aliases"]) == ("challenger", ["challenger"])
        as_user("bot")
        with pytest.raises(MlflowException, match="Permission denied"):
            MlflowClient().set_registered_model_alias(name, "champion", out["version"])
        assert aliases() == {"challenger": str(out["version"]), "champion": "2"}

        before = aliases()
        as_user("reader")  # reads, moves nothing
        assert MlflowClient().get_model_version_by_alias(name, "champion").version == "2"
        with pytest.raises(MlflowException) as e:
            MlflowClient().set_registered_model_alias(name, "challenger", "2")
        assert e.value.get_http_status_code() == 403 or "403" in str(e.value)
        with pytest.raises(WildtrainError, match=r"^MLflow registry: user 'reader' may not .*; no alias moved$"):
            register(bot_run, 36)
        assert aliases() == before

        as_user("bot-promote")  # the bot's other setting: it may promote through the gate
        out = register(run(), 36)
        assert out["decision"] == "champion" and aliases()["champion"] == str(out["version"])
    finally:
        mlflow.set_tracking_uri(None)


def test_a_password_in_params_yaml_is_refused_in_one_line(repo_copy):
    import yaml

    raw = yaml.safe_load((repo_copy / "params.yaml").read_text())
    raw["tune"]["storage"] = "postgresql://optuna:s3cr3t-pass@db.example:5432/optuna"
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    out = subprocess.run([sys.executable, "-m", "wildtrain.cli", "tune"], cwd=repo_copy, env=pipeline_env(repo_copy),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    (line,) = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert line.startswith("error: ") and "params.yaml: tune.storage: the URL carries a password" in line
    assert "PGPASSFILE" in line
    assert "s3cr3t-pass" not in out.stderr + out.stdout

    raw["tune"]["storage"] = "postgresql://optuna@db.example:5432/optuna"  # the same URL without it passes the check
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    from wildtrain.params import load

    assert load(repo_copy / "params.yaml").tune.storage.endswith("optuna@db.example:5432/optuna")
