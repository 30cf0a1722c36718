"""Files as a commit holds them: git-tracked ones with `git show`, DVC-tracked outputs through `dvc.api` (the local
cache, else the remote). A ref is compared, never checked out, so the work tree stays HEAD's."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from wildtrain.errors import WildtrainError


def commit(root: Path, ref: str) -> str:
    """The full sha of `ref`; an unknown ref is one line (a shallow CI checkout needs `fetch-depth: 0`)."""
    proc = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=root,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise WildtrainError(f"BASE={ref}: not a commit of {root} (a shallow clone? fetch it, or check out with "
                             f"fetch-depth: 0)")
    return proc.stdout.strip()


def text(root: Path, ref: str, path: str) -> str | None:
    """A git-tracked file's text at `ref`, or None where the commit has no such file."""
    proc = subprocess.run(["git", "show", f"{ref}:{path}"], cwd=root, capture_output=True)
    return proc.stdout.decode("utf-8", "replace") if proc.returncode == 0 else None


def json_at(root: Path, ref: str, path: str) -> dict | list | None:
    raw = text(root, ref, path)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise WildtrainError(f"{path} at {ref[:12]}: unreadable JSON ({e})") from None


def yaml_at(root: Path, ref: str, path: str) -> dict | None:
    raw = text(root, ref, path)
    if raw is None:
        return None
    try:
        return yaml.safe_load(raw) or {}
    except yaml.YAMLError as e:
        raise WildtrainError(f"{path} at {ref[:12]}: unreadable YAML ({' '.join(str(e).split())})") from None


def distance(root: Path, ancestor: str, ref: str) -> int:
    """Commits from `ancestor` to `ref` (git rev-list --count); a huge number where it is not an ancestor."""
    proc = subprocess.run(["git", "rev-list", "--count", f"{ancestor}..{ref}"], cwd=root, capture_output=True,
                          text=True)
    ok = proc.returncode == 0 and subprocess.run(["git", "merge-base", "--is-ancestor", ancestor, ref], cwd=root,
                                                 capture_output=True).returncode == 0
    return int(proc.stdout.strip()) if ok else 10**9


def list_at(root: Path, ref: str, folder: str) -> list[str]:
    """Paths of the files under `folder` at `ref` (git-tracked)."""
    proc = subprocess.run(["git", "ls-tree", "-r", "--name-only", ref, "--", folder], cwd=root,
                          capture_output=True, text=True)
    return proc.stdout.split() if proc.returncode == 0 else []


def dvc_output(root: Path, ref: str, path: str, dst: Path) -> Path | None:
    """A file inside a DVC-tracked output as `ref`'s dvc.lock names it, copied to `dst`; None where neither the
    cache nor the remote has it (the report then says "not recorded")."""
    import dvc.api

    try:
        with dvc.api.open(path, repo=str(root), rev=ref, mode="rb") as f:
            data = f.read()
    except Exception:  # noqa: BLE001 — missing from cache and remote, no dvc.lock at ref, a remote down: no record
        return None
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data)
    return dst
