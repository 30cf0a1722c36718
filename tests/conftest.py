"""Shared fixtures: offline env for every test, tiny datasets, a throwaway copy of the repo, and the one
tiny `dvc repro` every end-to-end test shares (`pipeline_repo`, tests/pipeline_fixture.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NETBLOCK = Path(__file__).parent / "netblock"
REPO_ENTRIES = ["dvc.yaml", "params.yaml", ".dvc/config", ".dvc/.gitignore", ".dvc/plots", ".dvcignore", ".gitignore",
                "stages", "data/source", "src", "configs", "pyproject.toml", "requirements.txt", "Makefile"]

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def _share_cpus_between_workers() -> None:
    """Under pytest-xdist (`make test` runs 2 workers), each worker and every process it starts keep to their own
    share of the CPUs. Two trainings that each use every core slow each other down several times (their OpenMP
    threads spin on the same cores); the pipeline sizes torch's threads from this affinity and records the count
    (MLflow tag repro.torch_threads), so a worker's runs are as reproducible as a single process's."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker or count < 2 or not hasattr(os, "sched_setaffinity"):
        return
    index, cpus = int(worker.removeprefix("gw")), sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, cpus[index::count] or [cpus[index % len(cpus)]])


_share_cpus_between_workers()


def pytest_collection_modifyitems(config, items):
    """The tests on the shared pipeline first, then the other slow ones and those on the team servers (`services`:
    each worker starts its own pair, ~30 s), then the fast ones (a stable sort: file order within each). With
    `--dist worksteal` the first worker starts on the pipeline's one `dvc repro` while the other runs the rest, and
    whichever is done first takes over half of what the other has left; the end of the run is then short tests, not
    a server start on a worker that the other waits for."""
    def rank(item) -> int:
        if "pipeline_repo" in item.fixturenames:
            return 0
        return 1 if item.get_closest_marker("slow") or "services" in item.fixturenames else 2

    items.sort(key=rank)


def copy_repo(dst: Path) -> Path:
    """The pipeline's files (no data, runs or venv) in a fresh git repo, as a user's clone would be."""
    for entry in REPO_ENTRIES:
        src = REPO / entry
        target = dst / entry
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, target)
    git = ["git", "-c", "user.email=ci@wildtrain", "-c", "user.name=ci"]
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dst, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=dst, check=True)
    return dst


def pipeline_env(repo: Path, netlog: Path | None = None) -> dict:
    """Environment for subprocesses in a repo copy: the venv's tools, the copy's code, optional net block."""
    env = os.environ.copy()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    paths = [str(repo / "src")]
    if netlog is not None:
        paths.insert(0, str(NETBLOCK))
        env["WILDTRAIN_NETLOG"] = str(netlog)
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["YOLO_CONFIG_DIR"] = str(repo / ".ultralytics")
    env.pop("MLFLOW_TRACKING_URI", None)
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "ci"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "ci@wildtrain"
    return env


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    return copy_repo(tmp_path / "repo")


@pytest.fixture(scope="session")
def pipeline_repo(tmp_path_factory):
    """The repo after one tiny `dvc repro` on a DVC-versioned user dataset. READ-ONLY: mutate a
    `pipeline_repo.clone(dst)` instead. Full contract: the docstring of tests/pipeline_fixture.py.
    Under pytest-xdist the workers share one build: the first to need it builds it, the others wait and load it."""
    from pipeline_fixture import build, shared_build

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return build(tmp_path_factory.mktemp("pipeline"))
    return shared_build(tmp_path_factory.getbasetemp().parent / "pipeline")  # the session's folder, not the worker's


@pytest.fixture
def tiny_coco():
    """A small synthetic COCO dataset in memory (no files)."""
    from wildtrain.data.coco import CocoDataset

    images = [{"id": i, "file_name": f"im{i}.png", "width": 100 + i, "height": 80} for i in range(1, 11)]
    anns = [{"id": i, "image_id": 1 + i % 10, "category_id": [3, 7, 12][i % 3], "bbox": [1.5 + i, 2.25, 10.0, 5.5],
             "area": 55.0, "iscrowd": 0} for i in range(1, 25)]
    cats = [{"id": 3, "name": "a"}, {"id": 7, "name": "b"}, {"id": 12, "name": "c"}]
    return CocoDataset(images=images, annotations=anns, categories=cats)


def free_port() -> int:
    """A loopback port nothing listens on (servers in tests bind to 127.0.0.1 only)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, server: subprocess.Popen, timeout: float = 180) -> None:
    """Until `url` answers; a server that exits first fails the test with its output."""
    import time
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            if server.poll() is not None:
                raise AssertionError(f"{server.args[:4]} exited: {server.stdout.read()[-3000:] if server.stdout else ''}")
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def stop(server: subprocess.Popen) -> None:
    """Stop a server started with start_new_session=True, and everything it spawned (SIGTERM, then SIGKILL)."""
    import os
    import signal

    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 30)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="session")
def services():
    """A real PostgreSQL + `mlflow server` on free loopback ports (wildtrain.services, what `make services` runs), in a
    temporary folder; stopped at the end of the session, also when tests fail. The folder is outside pytest's
    basetemp (mode 0700): as root, PostgreSQL runs as the `postgres` user, which must reach it."""
    import signal
    import tempfile

    from wildtrain import services as svc

    def interrupted(signum, frame):  # a CI timeout's SIGTERM: tear down like Ctrl-C, servers included
        raise KeyboardInterrupt

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, interrupted)
    folder = Path(tempfile.mkdtemp(prefix="wildtrain-services-"))
    passfile = os.environ.get("PGPASSFILE")
    try:
        started = svc.up(folder, free_port(), free_port())
        os.environ["PGPASSFILE"] = str(started.optuna_passfile)  # Optuna's role logs in as a user would
        yield started
    finally:
        svc.down(folder)
        shutil.rmtree(folder, ignore_errors=True)
        if passfile is None:
            os.environ.pop("PGPASSFILE", None)
        else:
            os.environ["PGPASSFILE"] = passfile
