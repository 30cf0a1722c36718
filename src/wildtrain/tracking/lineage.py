"""What makes a model traceable: git commit, dataset hash, file hashes, DVC stage hashes."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from wildtrain.io import read_yaml, sha256_file


def dataset_hash(files: dict[str, str]) -> str:
    """One hash for a dataset: sha256 over its sorted `relative-path sha256` lines."""
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel} {files[rel]}\n".encode())
    return h.hexdigest()


def hash_tree(root: Path) -> dict[str, str]:
    """Per-file sha256 of every file under root, keyed by POSIX relative path."""
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def git_commit(root: Path) -> dict[str, str]:
    """HEAD commit and whether the work tree has uncommitted changes ('unknown' outside git)."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD") or "unknown"
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": "unknown" if status is None else str(bool(status)).lower()}


def dvc_stage_hashes(root: Path) -> dict[str, str]:
    """A short hash per stage of dvc.lock (deps, params, outs), so a model names the exact DAG state."""
    lock = root / "dvc.lock"
    if not lock.is_file():
        return {}
    stages = (read_yaml(lock, "dvc.lock") or {}).get("stages", {})
    out = {}
    for name, entry in sorted(stages.items()):
        blob = repr(sorted((k, repr(v)) for k, v in entry.items() if k in ("deps", "params", "outs", "cmd")))
        out[f"dvc_stage.{name}"] = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return out
