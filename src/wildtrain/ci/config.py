"""Which config a comparison is about. CI reruns HEAD's committed params.yaml and compares it with BASE's committed
metrics; that is like with like only when BASE's metrics came from BASE's params.yaml (its dvc.lock records the
params every stage ran with) and nothing rewrote params.yaml before the rerun (e.g. a `wildtrain config apply`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from wildtrain.ci import git_files
from wildtrain.errors import WildtrainError

PIPELINE_FILES = ("params.yaml", "dvc.yaml")


def check_committed(root: Path) -> None:
    """The rerun is of HEAD as committed: an edited params.yaml or dvc.yaml would be compared as if BASE had it."""
    proc = subprocess.run(["git", "diff", "--name-only", "HEAD", "--", *PIPELINE_FILES], cwd=root,
                          capture_output=True, text=True)
    changed = proc.stdout.split()
    if proc.returncode != 0 or changed:
        raise WildtrainError(f"{', '.join(changed) or 'params.yaml'}: differs from HEAD's commit; ci-rerun reproduces "
                             f"the committed config (commit the change, or `git checkout -- {' '.join(changed)}`)")


def _value(params: dict, dotted: str):
    node = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return KeyError
        node = node[part]
    return node


def _leaves(prefix: str, value) -> dict:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(_leaves(f"{prefix}.{k}", v))
        return out
    return {prefix: value}


def lock_mismatches(lock: dict, params: dict, params_file: str = "params.yaml") -> list[str]:
    """'stage: key = locked (params.yaml: value)' for every param a dvc.lock stage ran with that differs from
    `params` now: the metrics beside that lock did not come from these params."""
    out = []
    for stage, entry in (lock.get("stages") or {}).items():
        for key, locked in ((entry.get("params") or {}).get(params_file) or {}).items():
            for leaf, value in _leaves(key, locked).items():
                now = _value(params, leaf)
                if now is KeyError or now != value:
                    shown = "absent" if now is KeyError else repr(now)
                    out.append(f"{stage}: {leaf} = {value!r} in dvc.lock ({params_file}: {shown})")
    return out


def describe(root: Path, base: str) -> dict:
    """BASE's config as the comparison needs it: its params, its dvc.lock, and whether they agree."""
    params = git_files.yaml_at(root, base, "params.yaml")
    lock = git_files.yaml_at(root, base, "dvc.lock")
    if params is None:
        return {"params": None, "lock": lock, "stale": [], "note": "BASE has no params.yaml: nothing to compare with"}
    if lock is None:
        return {"params": params, "lock": None, "stale": [],
                "note": "BASE has no dvc.lock, so no committed metrics: nothing to compare with"}
    stale = lock_mismatches(lock, params)
    note = ("BASE's committed metrics come from BASE's params.yaml (its dvc.lock agrees): the rerun of HEAD's "
            "committed params.yaml compares like with like" if not stale else
            f"BASE's dvc.lock does not match its params.yaml ({len(stale)} params differ, e.g. {stale[0]}): its "
            f"committed metrics come from another config, so the deltas below are not labelled")
    return {"params": params, "lock": lock, "stale": stale, "note": note}
