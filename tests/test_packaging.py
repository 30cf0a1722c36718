"""The package: pyproject.toml declares the runtime dependencies as ranges and requirements.txt is the lock, each
pin inside its range; `pip install .` into a fresh venv gives a working `wildtrain` command and library (installed
with uv from the same indexes `make setup` uses, so its cache makes it quick)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import REPO

TEST_ONLY = {"pytest", "pytest-timeout", "pytest-xdist", "filelock"}


def declared() -> tuple[dict[str, Requirement], dict[str, Requirement]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = {canonicalize_name(r.name): r for r in map(Requirement, project["dependencies"])}
    test = {canonicalize_name(r.name): r for r in map(Requirement, project["optional-dependencies"]["test"])}
    return runtime, test


def pins() -> dict[str, Requirement]:
    lines = [ln.split("#", 1)[0].strip() for ln in (REPO / "requirements.txt").read_text().splitlines()]
    return {canonicalize_name(r.name): r for r in map(Requirement, filter(None, lines))}


def test_every_pin_lies_in_its_declared_range():
    runtime, test = declared()
    locked = pins()
    assert set(runtime) | set(test) == set(locked), set(runtime) ^ set(locked) ^ set(test)
    assert set(test) == TEST_ONLY and not set(runtime) & TEST_ONLY
    for name, req in {**runtime, **test}.items():
        pin = locked[name]
        (spec,) = pin.specifier
        assert spec.operator == "==", f"requirements.txt: {pin} is not a pin"
        assert req.specifier.contains(spec.version), f"{pin} is outside pyproject's {req}"
        assert req.specifier and all(s.operator in (">=", "<") for s in req.specifier), f"{req}: not a range"
        assert req.extras == pin.extras, f"{req} vs {pin}: extras differ"


def pip_setting(env_name: str, key: str) -> str:
    """As the Makefile's $(STAMP) recipe reads them: PIP_* first, else pip's configuration."""
    value = os.environ.get(f"PIP_{env_name}")
    if value:
        return value
    got = subprocess.run([sys.executable, "-m", "pip", "config", "get", f"global.{key}"], capture_output=True,
                         text=True)
    return got.stdout.strip() if got.returncode == 0 else ""


def uv_install_args() -> list[str]:
    index, constraint = pip_setting("INDEX_URL", "index-url"), pip_setting("CONSTRAINT", "constraint")
    args = ["--index-strategy", "unsafe-best-match"] + (["--index-url", index] if index else [])
    for url in pip_setting("EXTRA_INDEX_URL", "extra-index-url").split():
        args += ["--extra-index-url", url]
    for link in pip_setting("FIND_LINKS", "find-links").split():
        args += ["--find-links", link]
    return args + (["--constraint", constraint] if constraint else [])


@pytest.mark.slow
@pytest.mark.install
def test_pip_install_in_a_fresh_venv_gives_a_working_cli_and_library(tmp_path):
    """A copy of the package (src/, pyproject.toml, README.md) installed, not editable, into a new venv without the
    project's site-packages; then the installed command and a prediction through the installed library."""
    source = tmp_path / "source"
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    venv = tmp_path / "venv"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin/python"
    try:
        import uv  # noqa: F401  (make setup installs it beside the project)

        cmd = [sys.executable, "-m", "uv", "pip", "install", "-q", "--python", str(python), *uv_install_args()]
    except ImportError:
        cmd = [str(python), "-m", "pip", "install", "-q"]
    done = subprocess.run([*cmd, str(source)], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    seconds = time.perf_counter() - started
    print(f"fresh venv + install: {seconds:.0f} s ({'uv' if 'uv' in cmd else 'pip'})")

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "YOLO_CONFIG_DIR")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}", XDG_CACHE_HOME=str(tmp_path / "cache"))
    version = subprocess.run(["wildtrain", "--version"], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=300)
    import wildtrain

    assert version.returncode == 0 and version.stdout.strip() == f"wildtrain {wildtrain.__version__}", \
        version.stderr[-3000:]
    assert subprocess.run(["wildtrain", "predict", "-h"], cwd=tmp_path, env=env, capture_output=True,
                          timeout=300).returncode == 0
    library = (f"import sys; sys.path.insert(0, {str(REPO / 'tests')!r})\n"
               "import numpy as np, wildtrain\n"
               f"assert wildtrain.__file__.startswith({str(venv)!r}), wildtrain.__file__\n"
               "from tiny_models import yolo_detector, scene\n"
               "from pathlib import Path\n"
               "folder = yolo_detector(Path('detector'))\n"
               "[found] = wildtrain.predict(wildtrain.load(folder), [scene(np.random.default_rng(0), 320, 320)])\n"
               "print('boxes', len(found.boxes), 'windows', found.windows)\n")
    lib = subprocess.run([str(python), "-c", library], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=900)
    assert lib.returncode == 0, lib.stdout[-2000:] + lib.stderr[-3000:]
    windows = int(lib.stdout.split()[-1])
    assert windows > 1, lib.stdout  # a 320 px image through a 160 px detector: sliced
