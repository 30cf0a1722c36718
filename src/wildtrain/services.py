"""A team's services: PostgreSQL and an authenticated `mlflow server` on it (`make services` / `make services-down`).

Both run as plain processes kept in one project-local folder (`.services/`, gitignored, secrets in 0600 files):
PostgreSQL through `initdb` + `pg_ctl` (Debian's `postgresql` package, installed with apt-get when missing; no system
service), MLflow's basic-auth app (wildtrain.team_auth: users, roles, a protected `champion`) with a proxied
artifact store (`--artifacts-destination`: a local folder, or `s3://...` with AWS_* and MLFLOW_S3_ENDPOINT_URL taken
from the environment). A second `up` reuses what runs. The test suite starts its own pair in a temporary folder
through the same functions (the `services` fixture, tests/conftest.py).

No secret is on a command line, in git or in a log: the MLflow server takes its backend URI from the environment
(MLFLOW_BACKEND_STORE_URI, no password in it) and each database password from a libpq password file (PGPASSFILE).
MLflow and Optuna log in as roles of their own, each owning only its database; the superuser is for set-up only.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from wildtrain.errors import WildtrainError
from wildtrain.io import write_json
from wildtrain.processes import alive, stop_group

FOLDER = ".services"
USER = "wildtrain"  # the cluster's superuser: creates the roles and databases, nothing else logs in as it
# database -> the role that owns it and logs into it (MLflow's tracking schema and its users; Optuna's tables)
DATABASES = {"mlflow": "wildtrain_mlflow", "mlflow_auth": "wildtrain_mlflow", "optuna": "wildtrain_optuna"}
PG_PORT, MLFLOW_PORT = 55432, 5050
ADMIN = "admin"  # the MLflow admin's name unless MLFLOW_AUTH_ADMIN_USERNAME says otherwise
LOOPBACK = ("127.0.0.1", "localhost", "::1")
HOST_ENV = "WILDTRAIN_SERVICES_HOST"  # `make services HOST=...`: the MLflow server's address (default 127.0.0.1)


@dataclass(frozen=True)
class Services:
    folder: Path
    pg_port: int
    mlflow_port: int
    host: str = "127.0.0.1"

    def pg_url(self, db: str) -> str:
        """The database's URL: its own role, no password (libpq reads it from PGPASSFILE)."""
        return f"postgresql://{DATABASES[db]}@127.0.0.1:{self.pg_port}/{db}"

    def passfile(self, role: str) -> Path:
        return self.folder / f"{role}.pgpass"

    @property
    def tracking_uri(self) -> str:
        return f"http://{'127.0.0.1' if self.host in ('0.0.0.0', '::') else self.host}:{self.mlflow_port}"

    @property
    def optuna_storage(self) -> str:
        return self.pg_url("optuna")

    @property
    def optuna_passfile(self) -> Path:
        return self.passfile(DATABASES["optuna"])

    @property
    def admin(self) -> tuple[str, str]:
        return admin_name(), admin_password(self.folder)

    def user_file(self, name: str) -> Path:
        return self.folder / "users" / name

    def client_env(self, user: str | None = None) -> dict[str, str]:
        """A client's environment: the server, a user's credentials (the admin's by default), Optuna's passfile."""
        name, password = (user, self.user_file(user).read_text().strip()) if user else self.admin
        return {"MLFLOW_TRACKING_URI": self.tracking_uri, "MLFLOW_TRACKING_USERNAME": name,
                "MLFLOW_TRACKING_PASSWORD": password, "PGPASSFILE": str(self.optuna_passfile)}


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


def secret_file(path: Path, value: str | None = None) -> str:
    """A secret kept in a 0600 file (created 0600, never readable by others in between); generated when new."""
    if not path.is_file() or value is not None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write((value if value is not None else secrets.token_urlsafe(24)) + "\n")
        os.replace(tmp, path)
    return path.read_text().strip()


def _password(folder: Path) -> str:
    return secret_file(folder / "pg_password")


def admin_name() -> str:
    return os.environ.get("MLFLOW_AUTH_ADMIN_USERNAME") or ADMIN


def admin_password(folder: Path) -> str:
    """The MLflow admin's password, set when the admin is created: MLFLOW_AUTH_ADMIN_PASSWORD if given, else generated;
    kept in the folder (MLflow ignores a later change of the variable: rotate it with MLflow's update-password API)."""
    given = os.environ.get("MLFLOW_AUTH_ADMIN_PASSWORD")
    path = folder / "admin_password"
    return secret_file(path, given if given and not path.is_file() else None)


def write_passfiles(folder: Path) -> None:
    """One libpq password file (0600) per role: `*:*:DB:ROLE:PASSWORD` lines for the databases it owns."""
    for role in sorted(set(DATABASES.values())):
        lines = [f"*:*:{db}:{role}:{secret_file(folder / f'{role}.password')}" for db, r in DATABASES.items()
                 if r == role]
        secret_file(folder / f"{role}.pgpass", "\n".join(lines))


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


def create_databases(folder: Path, port: int, password: str) -> None:
    """Each database owned by its role, closed to every other role (CONNECT revoked from PUBLIC); objects an older
    set-up created as the superuser are handed to the role."""
    import psycopg
    from psycopg import sql

    def connect(db: str):
        return psycopg.connect(host="127.0.0.1", port=port, user=USER, password=password, dbname=db,
                               autocommit=True, connect_timeout=10)

    with connect("postgres") as con, con.cursor() as cur:
        cur.execute("REVOKE ALL ON DATABASE postgres, template1 FROM PUBLIC")
        for role in sorted(set(DATABASES.values())):
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
            verb = "ALTER" if cur.fetchone() else "CREATE"
            cur.execute(sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(secret_file(folder / f"{role}.password"))))
        for db, role in DATABASES.items():
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db), sql.Identifier(role)))
            cur.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(db), sql.Identifier(role)))
            cur.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(db)))
    for db, role in DATABASES.items():
        with connect(db) as con, con.cursor() as cur:
            _hand_over(cur, role)


def _hand_over(cur, role: str) -> None:
    """Tables, views, sequences and enum types the superuser owns in `public` (an older set-up) -> `role`."""
    from psycopg import sql

    kinds = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "S": "SEQUENCE"}
    cur.execute("SELECT c.relkind, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "JOIN pg_roles o ON o.oid = c.relowner WHERE n.nspname = 'public' AND o.rolname = %s "
                "AND c.relkind IN ('r', 'p', 'v', 'm', 'S') ORDER BY c.relkind = 'S'", (USER,))
    for kind, name in cur.fetchall():
        try:  # a sequence owned by a column has followed its table already
            cur.execute(sql.SQL("ALTER " + kinds[kind] + " public.{} OWNER TO {}").format(sql.Identifier(name),
                                                                                         sql.Identifier(role)))
        except Exception:  # noqa: BLE001 — psycopg's error for a linked sequence; the rest still moves
            pass
    cur.execute("SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace JOIN pg_roles o "
                "ON o.oid = t.typowner WHERE n.nspname = 'public' AND t.typtype = 'e' AND o.rolname = %s", (USER,))
    for (name,) in cur.fetchall():
        cur.execute(sql.SQL("ALTER TYPE public.{} OWNER TO {}").format(sql.Identifier(name), sql.Identifier(role)))


def stop_postgres(folder: Path, mode: str = "fast") -> None:
    data = _pg_dir(folder) / "data"
    if pg_running_port(folder):
        subprocess.run(_as_owner([pg_bin("pg_ctl"), "-D", str(data), "-m", mode, "-w", "stop"]),
                       capture_output=True, text=True)


def read_state(folder: Path) -> dict:
    """What a service folder's `state.json` says runs there (pids, ports); {} when absent or unreadable."""
    try:
        return json.loads((folder / "state.json").read_text())
    except (OSError, ValueError):
        return {}


def save_state(folder: Path, **kw) -> None:
    """Merge `kw` into `state.json`, atomically: a crash mid-write must not lose the pid of a server still running."""
    write_json(folder / "state.json", {**read_state(folder), **kw}, indent=1)


def healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=3) as r:
            return r.status == 200
    except OSError:
        return False


# auth_cache_ttl_seconds: a verified password is remembered (HMAC-keyed, in the one worker's memory) for 60 s, so the
# scrypt check (~0.15 s of CPU) runs once a minute per user, not once per request: registering a version uploads the
# model with wildtrain's package (~130 files, a request each). A password reset or user change through the server
# drops its entry at once; the server runs one worker (`--workers 1`), so no other worker keeps a stale one.
AUTH_INI = """[mlflow]
default_permission = NO_PERMISSIONS
database_uri = {database_uri}
authorization_function = wildtrain.team_auth:authenticate
grant_default_workspace_access = false
auth_cache_ttl_seconds = 60
"""


def write_auth_config(svc: Services) -> Path:
    """MLflow's basic-auth settings: users in their own database, no access without a role, wildtrain's alias rule."""
    path = svc.folder / "auth.ini"
    secret_file(path, AUTH_INI.format(database_uri=svc.pg_url("mlflow_auth")).strip())
    return path


def server_env(svc: Services, backend: str) -> dict[str, str]:
    """Everything secret reaches the server through its environment (readable by its user only), not its argv."""
    role = DATABASES["mlflow"]
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "MLFLOW_BACKEND_STORE_URI": backend, "PGPASSFILE": str(svc.passfile(role)),
            "MLFLOW_AUTH_CONFIG_PATH": str(write_auth_config(svc)),
            "MLFLOW_AUTH_ADMIN_USERNAME": admin_name(), "MLFLOW_AUTH_ADMIN_PASSWORD": admin_password(svc.folder),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secret_file(svc.folder / "flask_secret"),
            # MLflow 3 also starts a job runner (3 huey consumers, 15 worker threads) for its GenAI jobs, which a
            # training pipeline never submits: seen taking CPU from training on a 2-core machine
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")}


def start_mlflow(svc: Services, backend: str, artifacts: str) -> int:
    """MLflow's basic-auth server on host:port with the PostgreSQL backend and proxied artifacts; returns its pid."""
    folder, port, host = svc.folder, svc.mlflow_port, svc.host
    state = read_state(folder)
    if alive(state.get("mlflow_pid")) and healthy(svc.tracking_uri):
        return state["mlflow_pid"]
    if not port_free(port):
        raise WildtrainError(f"services: port {port} on 127.0.0.1 is taken by another program; choose another "
                             f"(make services MLFLOW_PORT=...)")
    log = folder / "mlflow.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth",
                                 "--host", host, "--port", str(port), "--artifacts-destination", artifacts,
                                 "--workers", "1"],
                                cwd=folder, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=server_env(svc, backend))
    save_state(folder, mlflow_pid=proc.pid, mlflow_port=port, artifacts=artifacts, host=host)
    deadline = time.monotonic() + 240  # the first start creates MLflow's schema in PostgreSQL
    while time.monotonic() < deadline:
        if healthy(svc.tracking_uri):
            return proc.pid
        if proc.poll() is not None:
            raise WildtrainError(f"services: mlflow server exited ({_last_lines(log)}); log: {log}")
        time.sleep(0.5)
    stop_mlflow(folder)
    raise WildtrainError(f"services: mlflow server did not answer on {host}:{port} within 240 s; log: {log}")


@contextlib.contextmanager
def as_admin(svc: Services):
    """MLflow's auth client as the admin (it reads the credentials from the environment): restored afterwards."""
    from mlflow.server import get_app_client

    keys = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(zip(keys, svc.admin))
    try:
        yield get_app_client("basic-auth", tracking_uri=svc.tracking_uri)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def create_roles(svc: Services) -> dict[str, int]:
    """The maintainer, CI and reader roles (wildtrain.team_auth.ROLE_GRANTS), created once; name -> role id."""
    from wildtrain.team_auth import ROLE_GRANTS, WORKSPACE

    with as_admin(svc) as client:
        have = {r.name: r for r in client.list_roles(WORKSPACE)}
        for name, grants in ROLE_GRANTS.items():
            role = have.get(name) or client.create_role(WORKSPACE, name, f"wildtrain: {name.split('-')[-1]}")
            granted = {(g.resource_type, g.resource_pattern) for g in client.list_role_permissions(role.id)}
            for resource, permission in grants.items():
                if (resource, "*") not in granted:
                    client.add_role_permission(role.id, resource, "*", permission)
            have[name] = role
        return {name: have[name].id for name in ROLE_GRANTS}


def add_user(svc: Services, name: str, role: str, password: str | None = None) -> Path:
    """Create (or reset) an MLflow user holding one wildtrain role; its password goes to a 0600 file, returned."""
    from mlflow.exceptions import MlflowException

    from wildtrain.team_auth import ROLE_GRANTS

    if role not in ROLE_GRANTS:
        raise WildtrainError(f"services: unknown role '{role}' (known: {', '.join(ROLE_GRANTS)})")
    path = svc.user_file(name)
    password = secret_file(path, password or secrets.token_urlsafe(18))
    roles = create_roles(svc)
    with as_admin(svc) as client:
        try:
            client.create_user(name, password)
        except MlflowException as e:
            if e.error_code != "RESOURCE_ALREADY_EXISTS":
                raise WildtrainError(f"services: cannot create user '{name}' ({e.message})") from None
            client.update_user_password(name, password)
        held = {r.name for r in client.list_user_roles(name)}
        for other in held & set(ROLE_GRANTS) - {role}:
            client.unassign_role(name, roles[other])
        if role not in held:
            client.assign_role(name, roles[role])
    return path


def stop_mlflow(folder: Path) -> None:
    stop_group(read_state(folder).get("mlflow_pid"), grace_s=20)
    save_state(folder, mlflow_pid=None)


def up(folder: Path, pg_port: int = PG_PORT, mlflow_port: int = MLFLOW_PORT, artifacts: str | None = None,
       host: str = "127.0.0.1") -> Services:
    """Start (or reuse) PostgreSQL and the MLflow server kept in `folder`."""
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    if os.geteuid() == 0:  # the `postgres` user must reach its data folder inside (traverse only, no listing)
        folder.chmod(0o711)
    password = _password(folder)
    pg_port = start_postgres(folder, pg_port, password)
    write_passfiles(folder)
    try:
        create_databases(folder, pg_port, password)
    except Exception as e:  # noqa: BLE001 — the driver's errors are many kinds; one line each
        raise WildtrainError(f"services: PostgreSQL on 127.0.0.1:{pg_port} refused the set-up "
                             f"({' '.join(str(e).split())[:300]})") from None
    state = read_state(folder)
    if alive(state.get("mlflow_pid")) and state.get("mlflow_port"):
        mlflow_port, host = state["mlflow_port"], state.get("host") or host
    svc = Services(folder, pg_port, mlflow_port, host)
    artifacts = artifacts or state.get("artifacts") or str(folder / "artifacts")
    start_mlflow(svc, svc.pg_url("mlflow"), artifacts)
    create_roles(svc)
    return svc


def down(folder: Path) -> None:
    folder = folder.resolve()
    stop_mlflow(folder)
    stop_postgres(folder)


NO_TLS_WARNING = """
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
WARNING: the MLflow server listens on {host}:{port} WITHOUT TLS. Passwords (HTTP basic auth), runs and
models cross the network in clear text. Put a TLS reverse proxy in front of it (docs/tutorials/team.md:
Caddy or nginx terminating HTTPS) and give users https:// URLs; or bind to 127.0.0.1 (the default).
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
"""


def main(argv: list[str]) -> int:
    from wildtrain.env import project_root

    folder = project_root() / FOLDER
    try:
        if argv[:1] == ["down"]:
            down(folder)
            print(f"services: stopped (data kept in {folder})")
            return 0
        host = os.environ.get(HOST_ENV) or "127.0.0.1"  # beyond loopback only when asked
        svc = up(folder, int(os.environ.get("PG_PORT") or PG_PORT), int(os.environ.get("MLFLOW_PORT") or MLFLOW_PORT),
                 os.environ.get("ARTIFACTS") or None, host)
        if argv[:1] == ["user"]:
            if len(argv) != 3:
                raise WildtrainError("services: give the user's name and role: make services-user NAME=alice "
                                     "ROLE=wildtrain-maintainer|wildtrain-ci|wildtrain-ci-promote|wildtrain-reader")
            path = add_user(svc, argv[1], argv[2], os.environ.get("WILDTRAIN_USER_PASSWORD") or None)
            print(f"services: user '{argv[1]}' holds {argv[2]}; password in {path} (0600): hand it over, then "
                  f"delete the file")
            return 0
    except WildtrainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if svc.host not in LOOPBACK:
        print(NO_TLS_WARNING.format(host=svc.host, port=svc.mlflow_port), file=sys.stderr)
    print(f"services: PostgreSQL on 127.0.0.1:{svc.pg_port} (MLflow and Optuna log in as roles of their own), "
          f"MLflow server with basic-auth on {svc.host}:{svc.mlflow_port} (data in {folder}; `make services-down` "
          f"stops them)")
    print(f"secrets (0600 files, never printed): MLflow admin '{admin_name()}': {folder / 'admin_password'}; "
          f"Optuna's database role: {svc.optuna_passfile}")
    print(f"export MLFLOW_TRACKING_URI={svc.tracking_uri}")
    print("export MLFLOW_TRACKING_USERNAME=... MLFLOW_TRACKING_PASSWORD=...  # a user of `make services-user`")
    print(f"export PGPASSFILE={svc.optuna_passfile}")
    print(f"tune.storage: {svc.optuna_storage}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
