"""`make labelstudio` / `make labelstudio-down`: a Label Studio server for the annotation loop, as a plain process.

Label Studio lives in its own venv (`.labelstudio/venv`, pinned in requirements-labelstudio.txt: its ~150 packages,
Django among them, stay apart from the project's pinned set). Its SQLite database and media are in
`.labelstudio/data`; it binds 127.0.0.1 only, serves local files under LOCAL_FILES_DOCUMENT_ROOT (the project
root unless set), and never phones home: no version check, no analytics, no Sentry. Its admin account and API key
come from LABEL_STUDIO_USERNAME / LABEL_STUDIO_PASSWORD / LABEL_STUDIO_API_KEY, else are generated on the first
start and kept in 0600 files in `.labelstudio/` (the key is a legacy API token, sent as `Authorization: Token`).
The test suite starts its own server in a temporary folder through the same functions.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from wildtrain.errors import WildtrainError
from wildtrain.processes import alive, stop_group
from wildtrain.services import _last_lines, port_free, read_state, save_state, secret_file

FOLDER = ".labelstudio"
PORT = 8080
USERNAME = "wildtrain@localhost"  # Label Studio's users are e-mail addresses
START_TIMEOUT = 300  # the first start creates the database (Django migrations): ~1 min on 2 busy cores


@dataclass(frozen=True)
class Server:
    folder: Path
    port: int
    api_key: str
    pid: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def venv_binary(folder: Path) -> Path:
    return folder / "venv" / "bin" / "label-studio"


def api_key(folder: Path) -> str:
    """LABEL_STUDIO_API_KEY, else the key generated on the first start (kept 0600; Label Studio keeps the first)."""
    given = os.environ.get("LABEL_STUDIO_API_KEY")
    path = folder / "api_key"
    if given and not path.is_file():
        return secret_file(path, given)
    return secret_file(path, None) if not path.is_file() else path.read_text().strip()


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=3) as r:
            return r.status == 200
    except OSError:
        return False


def server_env(folder: Path, document_root: Path) -> dict[str, str]:
    """Everything reaches Label Studio through its environment: no secret on its command line."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "DJANGO_", "VIRTUAL_ENV"))}
    venv_bin = str(folder / "venv" / "bin")
    return {**keep, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "LABEL_STUDIO_BASE_DATA_DIR": str(folder / "data"), "DJANGO_DB": "sqlite",
            "LOCAL_FILES_SERVING_ENABLED": "true", "LOCAL_FILES_DOCUMENT_ROOT": str(document_root),
            "LABEL_STUDIO_USERNAME": os.environ.get("LABEL_STUDIO_USERNAME") or USERNAME,
            "LABEL_STUDIO_PASSWORD": os.environ.get("LABEL_STUDIO_PASSWORD") or secret_file(folder / "password"),
            "LABEL_STUDIO_USER_TOKEN": api_key(folder), "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "SECRET_KEY": secret_file(folder / "secret_key"),  # Django's: sessions survive a restart
            # offline: no PyPI version check, no usage analytics, no error reports to Sentry
            "LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false", "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "", "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"}


def up(folder: Path, port: int = PORT, document_root: Path | None = None) -> Server:
    """Start (or reuse) the server kept in `folder`; returns it once it answers and accepts its API key."""
    folder = folder.resolve()
    binary = venv_binary(folder)
    if not binary.is_file():
        raise WildtrainError(f"labelstudio: {binary} not found; install it with `make labelstudio`")
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    state = read_state(folder)
    key = api_key(folder)
    if alive(state.get("pid")) and state.get("port") and healthy(f"http://127.0.0.1:{state['port']}"):
        return Server(folder, state["port"], key, state["pid"])
    if not port_free(port):  # Label Studio itself would silently move to the next free port
        raise WildtrainError(f"labelstudio: port {port} on 127.0.0.1 is taken by another program; choose another "
                             f"(make labelstudio LABEL_STUDIO_PORT=...)")
    root = (document_root or Path.cwd()).resolve()
    log = folder / "server.log"
    started = time.monotonic()
    with open(log, "ab") as out:
        proc = subprocess.Popen([str(binary), "start", "--internal-host", "127.0.0.1", "--port", str(port),
                                 "--no-browser", "--data-dir", str(folder / "data"), "--enable-legacy-api-token",
                                 "--log-level", "WARNING"],
                                cwd=folder, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=server_env(folder, root))
    save_state(folder, pid=proc.pid, port=port, document_root=str(root))
    server = Server(folder, port, key, proc.pid)
    try:
        while time.monotonic() - started < START_TIMEOUT:
            if healthy(server.url):
                save_state(folder, start_seconds=round(time.monotonic() - started, 1))
                return server
            if proc.poll() is not None:
                raise WildtrainError(f"labelstudio: the server exited ({_last_lines(log)}); log: {log}")
            time.sleep(0.5)
        raise WildtrainError(f"labelstudio: no answer on 127.0.0.1:{port} within {START_TIMEOUT} s; log: {log}")
    except BaseException:  # a timeout, an exit, Ctrl-C: no server left behind half-started
        down(folder)
        raise


def down(folder: Path) -> None:
    """Stop the server (its process group: runserver and what it started); the database is kept."""
    folder = folder.resolve()
    stop_group(read_state(folder).get("pid"), grace_s=15)
    if folder.is_dir():
        save_state(folder, pid=None)


def main(argv: list[str]) -> int:
    from wildtrain.env import project_root

    root = project_root()
    folder = root / FOLDER
    try:
        if argv[:1] == ["down"]:
            down(folder)
            print(f"labelstudio: stopped (database kept in {folder / 'data'})")
            return 0
        docs = os.environ.get("LOCAL_FILES_DOCUMENT_ROOT")
        server = up(folder, int(os.environ.get("LABEL_STUDIO_PORT") or PORT), Path(docs) if docs else root)
    except WildtrainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    state = read_state(folder)
    took = f"; started in {state['start_seconds']} s" if state.get("start_seconds") else ""
    print(f"labelstudio: Label Studio on {server.url} (pid {server.pid}, data in {folder / 'data'}, local files "
          f"under {state.get('document_root')}{took}; `make labelstudio-down` stops it)")
    print(f"login: {os.environ.get('LABEL_STUDIO_USERNAME') or USERNAME}, password in {folder / 'password'} "
          f"(unless LABEL_STUDIO_PASSWORD was set at the first start)")
    print(f"export LABEL_STUDIO_URL={server.url}")
    print(f"export LABEL_STUDIO_API_KEY={server.api_key}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
