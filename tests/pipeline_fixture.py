"""One tiny `dvc repro` shared by every end-to-end test of a session (the `pipeline_repo` fixture, conftest.py).

With pytest-xdist (`make test` runs 2 workers) it is still one build: the first worker to need it builds it under
a file lock in the session's shared temp folder (`shared_build`) and the others load it from there, so the
fixture's read-only contract below matters across processes too.

Contract of `pipeline_repo` (a `Pipeline`):
- `path`: a git repository made by `copy_repo()` with `configs/tiny.yaml` applied to params.yaml and a user
  dataset added through the real `wildtrain data add`: the built-in generator's 24 scenes at 160 px written
  as a COCO folder, versioned as `data/source/survey` (`survey.dvc`; `data.source: data/source/survey`).
- git history: "init" (copy_repo), "tiny config, survey source" (what the training runs' `git_commit` tag
  names), then "baseline" = HEAD: dvc.lock, metrics/ and the .gitignore files DVC wrote. The work tree is
  clean and `dvc status` says "Data and pipelines are up to date.".
- every stage's outputs are in the workspace and in `path/.dvc/cache`; MLflow runs and version 1 of both
  registered models are in `path/mlflow.db` (artifacts in `path/mlruns`); no remote is configured.
- `repro`: stdout of that one `dvc repro` (every stage ran once); `netlog`: the network guard's log (empty).

The fixture is READ-ONLY: a test may read files and run read-only commands there (`dvc status`, a no-op
`dvc repro`, `dvc metrics show`, MLflow searches). A test that changes anything (edits the source,
`dvc exp run`, other params, a remote, registering) works in its own `pipeline_repo.clone(dst)`, which
costs seconds, not a training:
- `git clone` of HEAD, DVC's cache pointed at the fixture's (`.dvc/config.local`, copies never links,
  so editing a clone's files never touches the cache), `dvc checkout`, and a copy of mlflow.db + mlruns
  with their paths rewritten, so registering in a clone continues at version 2 and leaves the fixture alone.
- The cache, and with it DVC's run-cache, is shared: a clone may add objects (never `dvc gc`), and a stage
  rerun with deps and params that another clone already ran is restored rather than run; pass `--force`
  or `--no-run-cache` to `dvc repro` / `dvc exp run` when a test needs the real run.
- `git_clone(src, dst)`: a plain `git clone` of any repo (the fixture, or a clone that has a remote), with no
  cache, outputs or MLflow store: what a new user gets (then `dvc pull`).
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

from conftest import copy_repo, pipeline_env

SOURCE = "data/source/survey"


def sh(args: list[str], repo: Path, env: dict, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run a command in a repo; a failure shows its output's tail."""
    proc = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@dataclass
class Workspace:
    """A repository to run commands in, with the offline env and its own network log."""

    path: Path
    env: dict
    netlog: Path

    def sh(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh(list(args), self.path, self.env, check=check)

    def network_log(self) -> str:
        return self.netlog.read_text() if self.netlog.exists() else ""


@dataclass
class Pipeline(Workspace):
    repro: str  # stdout of the fixture's one `dvc repro`

    def clone(self, dst: Path) -> Workspace:
        """A copy of HEAD to mutate, outputs checked out from the shared cache (see the module docstring)."""
        ws = git_clone(self.path, dst)
        ws.sh("dvc", "cache", "dir", "--local", str(self.path / ".dvc" / "cache"))
        ws.sh("dvc", "config", "--local", "cache.type", "reflink,copy")
        ws.sh("dvc", "checkout", "-q")
        if (self.path / "mlruns").is_dir():
            shutil.copytree(self.path / "mlruns", dst / "mlruns")
        shutil.copyfile(self.path / "mlflow.db", dst / "mlflow.db")
        _rebase_paths(dst / "mlflow.db", str(self.path), str(dst))
        return ws


def git_clone(src: Path, dst: Path) -> Workspace:
    """`git clone src dst`: tracked files only (no DVC cache, outputs or MLflow store), with its own network log."""
    subprocess.run(["git", "clone", "-q", str(src), str(dst)], check=True, capture_output=True, timeout=120)
    netlog = dst.parent / f"{dst.name}.network.log"
    return Workspace(dst, pipeline_env(dst, netlog), netlog)


def _rebase_paths(db: Path, old: str, new: str) -> None:
    """Point every text column of an MLflow sqlite store that names `old` (artifact locations) at `new`."""
    with sqlite3.connect(db) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for col in con.execute(f'PRAGMA table_info("{table}")').fetchall():
                if "CHAR" in col[2].upper() or "TEXT" in col[2].upper():
                    con.execute(f'UPDATE "{table}" SET "{col[1]}" = replace("{col[1]}", ?, ?) '
                                f'WHERE "{col[1]}" LIKE ?', (old, new, f"%{old}%"))


def write_survey(dst: Path, num_images: int = 24, image_size: int = 160, max_objects: int = 4) -> Path:
    """A user's COCO folder (annotations.json + images/): the built-in generator's scenes, as configs/tiny.yaml."""
    from wildtrain.data import synthetic

    ds = synthetic.generate(dst, num_images, image_size, max_objects, empty_fraction=0.1, seed=0)
    ds.save(dst / "annotations.json")
    return dst


def shared_build(folder: Path) -> Pipeline:
    """One build for all pytest-xdist workers of a session: the first caller builds it in `folder` (under a file
    lock), the others wait for it and load it. A failed build fails them all with its message, without a retry."""
    from filelock import FileLock

    done, failed = folder / "built", folder / "failed"
    with FileLock(f"{folder}.lock"):
        if failed.exists():
            raise AssertionError(f"the shared pipeline fixture failed in another worker:\n{failed.read_text()}")
        if done.exists():
            netlog = folder / "network.log"
            return Pipeline(folder / "repo", pipeline_env(folder / "repo", netlog), netlog, done.read_text())
        try:
            pipeline = build(folder)
        except BaseException as e:
            folder.mkdir(parents=True, exist_ok=True)
            failed.write_text(f"{type(e).__name__}: {e}"[-6000:])
            raise
        done.write_text(pipeline.repro)
        return pipeline


def build(tmp: Path) -> Pipeline:
    """Make the fixture repository and run its one `dvc repro` (a few minutes on 2 CPU cores)."""
    repo = copy_repo(tmp / "repo")
    netlog = tmp / "network.log"
    env = pipeline_env(repo, netlog)
    sh(["python", "-m", "wildtrain.cli", "config", "apply", "configs/tiny.yaml"], repo, env)
    survey = write_survey(tmp / "user-data" / "survey")
    sh(["python", "-m", "wildtrain.cli", "data", "add", str(survey)], repo, env)
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "tiny config, survey source"], repo, env)
    repro = sh(["dvc", "repro"], repo, env).stdout
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "baseline"], repo, env)
    return Pipeline(repo, env, netlog, repro)
