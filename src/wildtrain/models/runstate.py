"""Resume bookkeeping shared by the adapters: a run folder remembers what it was started with.

An interrupted training continues only if it was started with the same arguments and data (the
fingerprint) and did not finish; anything else starts afresh in an emptied folder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from wildtrain.io import read_json, write_json

STATE_FILE = "wildtrain_state.json"  # fingerprint of the args a run folder was started with


def fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(list(parts), sort_keys=True, default=str).encode()).hexdigest()


def start(workdir: Path, digest: str, resume: str, checkpoint_exists: bool) -> bool:
    """True to resume the run in workdir; otherwise empty workdir and record `digest` there."""
    state_path = workdir / STATE_FILE
    state = read_json(state_path) if state_path.is_file() else {}
    if resume == "auto" and checkpoint_exists and state.get("fingerprint") == digest and not state.get("complete"):
        return True
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    write_json(state_path, {"fingerprint": digest, "complete": False})
    return False


def finish(workdir: Path, digest: str) -> None:
    write_json(workdir / STATE_FILE, {"fingerprint": digest, "complete": True})
