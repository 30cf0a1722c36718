"""The one resume mechanism: a training work folder remembers what it was started with and its MLflow run.

An interrupted training continues (from the framework's own last checkpoint, in the same MLflow run) only if it
was started with the same fingerprint (params + data) and did not finish; anything else starts afresh in an
emptied folder, so checkpoints of other params or data are never picked up.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from wildtrain.io import read_json, write_json

STATE_FILE = "wildtrain_state.json"


def fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(list(parts), sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Start:
    resume: bool  # continue the interrupted run in the work folder
    run_id: str | None  # its MLflow run (None: open a new one)


def resumable(workdir: Path, digest: str, policy: str) -> bool:
    """Whether the work folder holds an unfinished training started with `digest` (read only: the extra ranks of a
    distributed training ask this of their own folder, rank 0 alone empties and records it)."""
    path = workdir / STATE_FILE
    state = read_json(path) if path.is_file() else {}
    return policy == "auto" and state.get("fingerprint") == digest and not state.get("complete")


def begin(workdir: Path, digest: str, policy: str) -> Start:
    """Decide whether to resume; when not, empty the work folder and record `digest` there."""
    path = workdir / STATE_FILE
    if resumable(workdir, digest, policy):
        return Start(True, read_json(path).get("run_id"))
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    write_json(path, {"fingerprint": digest, "complete": False, "run_id": None})
    return Start(False, None)


def attach(workdir: Path, run_id: str) -> None:
    """Remember the MLflow run as soon as it exists, so a crash right after still resumes into it."""
    path = workdir / STATE_FILE
    write_json(path, {**read_json(path), "run_id": run_id})


def finish(workdir: Path) -> None:
    path = workdir / STATE_FILE
    write_json(path, {**read_json(path), "complete": True})
