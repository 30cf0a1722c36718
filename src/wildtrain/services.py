"""A team's services on loopback: PostgreSQL and an `mlflow server` on it (`make services` / `make services-down`).

Both run as plain processes kept in one project-local folder (`.services/`, gitignored): PostgreSQL through
`initdb` + `pg_ctl` (Debian's `postgresql` package, installed with apt-get when missing; no system service), MLflow
with `--backend-store-uri postgresql://...` and a proxied artifact store (`--artifacts-destination`: a local folder,
or `s3://...` with AWS_* and MLFLOW_S3_ENDPOINT_URL taken from the environment). A second `up` reuses what runs.
The test suite starts its own pair in a temporary folder through the same functions (the `services` fixture,
tests/conftest.py).
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from wildtrain.errors import WildtrainError
from wildtrain.processes import alive

FOLDER = ".services"
USER = "wildtrain"
DATABASES = ("mlflow", "optuna")  # MLflow's schema and Optuna's tables in databases of their own
PG_PORT, MLFLOW_PORT = 55432, 5050


@dataclass(frozen=True)
class Services:
    folder: Path
    pg_port: int
    mlflow_port: int
    password: str

    def pg_url(self, db: str) -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.pg_port}/{db}"

    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def optuna_storage(self) -> str:
        return self.pg_url("optuna")


def pg_bin(name: str) -> str:
    """A PostgreSQL server binary; Debian's package is installed when none is found (as root, with apt-get)."""
    def find() -> str | None:
        found = shutil.which(name)
        if found:
            return found
        versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
        return versions[-1] if versions else None

    found = find()
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        print("services: installing PostgreSQL (apt-get install postgresql)", flush=True)
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL,
                 "env": {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}}
        subprocess.run(["apt-get", "update", "-q"], **quiet)
        subprocess.run(["apt-get", "install", "-y", "-q", "postgresql"], **quiet)
        found = find()
    if found is None:
        raise WildtrainError(f"services: PostgreSQL's `{name}` not found; install Debian's `postgresql` package "
                             f"(apt-get install postgresql) or put its bin/ folder on PATH")
    return found


def _as_owner(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: there it runs as the package's `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _own(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: a port in TIME_WAIT is free
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pg_dir(folder: Path) -> Path:
    return folder / "postgres"


def _password(folder: Path) -> str:
    path = folder / "pg_password"
    if not path.is_file():
        path.write_text(secrets.token_urlsafe(18))
        path.chmod(0o600)
    return path.read_text().strip()


def _last_lines(path: Path, n: int = 3) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])[-400:]


def pg_running_port(folder: Path) -> int | None:
    """The port of this folder's running PostgreSQL, or None (postmaster.pid: pid on line 1, port on line 4)."""
    pid_file = _pg_dir(folder) / "data" / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
        os.kill(int(lines[0]), 0)
        return int(lines[3])
    except (OSError, ValueError, IndexError):
        return None


def start_postgres(folder: Path, port: int, password: str) -> int:
    """initdb once, then pg_ctl start on 127.0.0.1:port (TCP only, password auth); returns the port it runs on."""
    running = pg_running_port(folder)
    if running:
        return running
    if not port_free(port):
        raise WildtrainError(f"services: port {port} on 127.0.0.1 is taken by another program; choose another "
                             f"(make services PG_PORT=...)")
    pg = _pg_dir(folder)
    data = pg / "data"
    if not (data / "PG_VERSION").is_file():
        shutil.rmtree(pg, ignore_errors=True)
        pg.mkdir(parents=True)
        pg.chmod(0o700)
        _own(pg)
        pwfile = pg / "pwfile"
        pwfile.write_text(password + "\n")
        _own(pwfile)
        out = subprocess.run(_as_owner([pg_bin("initdb"), "-D", str(data), "-U", USER, f"--pwfile={pwfile}",
                                        "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8",
                                        "--no-instructions"]), capture_output=True, text=True)
        pwfile.unlink()
        if out.returncode != 0:
            raise WildtrainError(f"services: PostgreSQL cannot start: initdb failed "
                                 f"({(out.stderr or out.stdout).strip().splitlines()[-1:]})")
    log = pg / "server.log"
    # unix_socket_directories='': TCP on loopback only, no socket file in a path that may be too long for one
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories=''"
    out = subprocess.run(_as_owner([pg_bin("pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w", "-t", "60",
                                    "start"]), capture_output=True, text=True)
    if out.returncode != 0:
        raise WildtrainError(f"services: PostgreSQL cannot start ({_last_lines(log) or out.stderr.strip()[-300:]}); "
                             f"log: {log}")
    return port


def create_databases(url_for, names=DATABASES) -> None:
    import psycopg

    con = psycopg.connect(url_for("postgres"), autocommit=True, connect_timeout=10)
    try:
        with con.cursor() as cur:
            for name in names:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        con.close()


def stop_postgres(folder: Path, mode: str = "fast") -> None:
    data = _pg_dir(folder) / "data"
    if pg_running_port(folder):
        subprocess.run(_as_owner([pg_bin("pg_ctl"), "-D", str(data), "-m", mode, "-w", "stop"]),
                       capture_output=True, text=True)


def _state(folder: Path) -> dict:
    try:
        return json.loads((folder / "state.json").read_text())
    except (OSError, ValueError):
        return {}


def _save_state(folder: Path, **kw) -> None:
    (folder / "state.json").write_text(json.dumps({**_state(folder), **kw}, indent=1))


def healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=3) as r:
            return r.status == 200
    except OSError:
        return False


def start_mlflow(folder: Path, port: int, backend: str, artifacts: str) -> int:
    """`mlflow server` on 127.0.0.1:port with the PostgreSQL backend and proxied artifacts; returns its pid."""
    state = _state(folder)
    if alive(state.get("mlflow_pid")) and healthy(f"http://127.0.0.1:{state.get('mlflow_port')}"):
        return state["mlflow_pid"]
    if not port_free(port):
        raise WildtrainError(f"services: port {port} on 127.0.0.1 is taken by another program; choose another "
                             f"(make services MLFLOW_PORT=...)")
    log = folder / "mlflow.log"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           # MLflow 3 also starts a job runner (3 huey consumers, 15 worker threads) for its GenAI jobs, which a
           # training pipeline never submits: seen taking CPU from training on a 2-core machine
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")}
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                                 "--backend-store-uri", backend, "--artifacts-destination", artifacts,
                                 "--workers", "1"],
                                cwd=folder, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env)
    _save_state(folder, mlflow_pid=proc.pid, mlflow_port=port, artifacts=artifacts)
    deadline = time.monotonic() + 240  # the first start creates MLflow's schema in PostgreSQL
    while time.monotonic() < deadline:
        if healthy(f"http://127.0.0.1:{port}"):
            return proc.pid
        if proc.poll() is not None:
            raise WildtrainError(f"services: mlflow server exited ({_last_lines(log)}); log: {log}")
        time.sleep(0.5)
    stop_mlflow(folder)
    raise WildtrainError(f"services: mlflow server did not answer on 127.0.0.1:{port} within 240 s; log: {log}")


def stop_mlflow(folder: Path) -> None:
    pid = _state(folder).get("mlflow_pid")
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not alive(pid):
            break
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        deadline = time.monotonic() + 20
        while alive(pid) and time.monotonic() < deadline:
            try:  # reap it when it is our child (the test fixture); else wait for it to go
                if os.waitpid(pid, os.WNOHANG)[0]:
                    break
            except ChildProcessError:
                pass
            time.sleep(0.2)
    _save_state(folder, mlflow_pid=None)


def up(folder: Path, pg_port: int = PG_PORT, mlflow_port: int = MLFLOW_PORT, artifacts: str | None = None) -> Services:
    """Start (or reuse) PostgreSQL and the MLflow server kept in `folder`."""
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:  # the `postgres` user must reach its data folder inside
        folder.chmod(folder.stat().st_mode | 0o011)
    password = _password(folder)
    pg_port = start_postgres(folder, pg_port, password)
    svc = Services(folder, pg_port, mlflow_port, password)
    try:
        create_databases(svc.pg_url)
    except Exception as e:  # noqa: BLE001 — the driver's errors are many kinds; one line each
        raise WildtrainError(f"services: PostgreSQL on 127.0.0.1:{pg_port} refused the set-up "
                             f"({' '.join(str(e).split())[:300]})") from None
    state = _state(folder)
    if alive(state.get("mlflow_pid")) and state.get("mlflow_port"):
        mlflow_port = state["mlflow_port"]
    artifacts = artifacts or state.get("artifacts") or str(folder / "artifacts")
    start_mlflow(folder, mlflow_port, svc.pg_url("mlflow"), artifacts)
    return Services(folder, pg_port, mlflow_port, password)


def down(folder: Path) -> None:
    folder = folder.resolve()
    stop_mlflow(folder)
    stop_postgres(folder)


def main(argv: list[str]) -> int:
    from wildtrain.env import project_root

    folder = project_root() / FOLDER
    try:
        if argv[:1] == ["down"]:
            down(folder)
            print(f"services: stopped (data kept in {folder})")
            return 0
        svc = up(folder, int(os.environ.get("PG_PORT") or PG_PORT), int(os.environ.get("MLFLOW_PORT") or MLFLOW_PORT),
                 os.environ.get("ARTIFACTS") or None)
    except WildtrainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"services: PostgreSQL on 127.0.0.1:{svc.pg_port}, MLflow server on {svc.tracking_uri} "
          f"(data in {folder}; `make services-down` stops them)")
    print(f"export MLFLOW_TRACKING_URI={svc.tracking_uri}")
    print(f"tune.storage: {svc.optuna_storage}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
