"""Replicates as DVC experiments: which param set a replicate belongs to, which are done, and running the rest.

A replicate is `dvc exp run --temp -n rep-<set>-<families>-s<seed> -S <overrides> -S <seed keys>=<seed> <evaluate
stages>`: it runs in a temporary copy (the workspace, its outputs and the MLflow registry are left alone) and stops
at the evaluate stages, so nothing is registered. Its name carries a hash of the resolved params without the seeds
(plus uncommitted code changes), so rerunning finds the replicates already done in `dvc exp show` and skips them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from wildtrain import families, params as params_mod
from wildtrain.errors import WildtrainError
from wildtrain.io import read_yaml

# The training seeds a replicate varies. data.seed and convert.seed stay: they decide the data and its split,
# which every replicate must share for the paired comparison to mean anything.
SEED_KEYS = ("train.seed", "classifier.seed", "segmenter.seed", "yoloseg.seed", "rebalance.seed")
DEFAULT_FAMILIES = families.IN_PIPELINE
# Tracked files a run itself rewrites: not part of what defines a param set.
NOT_CODE = ("params.yaml", "dvc.lock", "metrics", ":(glob)**/.gitignore")


@dataclass(frozen=True)
class ParamSet:
    """The current params plus `-S` overrides; `key` identifies it (params without seeds, and the code)."""

    label: str  # how reports name it: the overrides, or "params.yaml"
    overrides: tuple[str, ...]  # key=value, as `dvc exp run -S` takes them
    key: str  # 8 hex digits

    def experiment(self, fams: tuple[str, ...], seed: int) -> str:
        return f"rep-{self.key}-{family_code(fams)}-s{seed}"


def family_code(fams: tuple[str, ...]) -> str:
    """detector, classifier, two_stage, segmenter -> 'dcts' (in FAMILIES order), for experiment names."""
    return "".join(f[0] for f in families.FAMILIES if f in fams)


def families_of(code: str) -> set[str]:
    return {f for f in families.FAMILIES if f[0] in code}


def evaluate_stage(family: str) -> str:
    """dvc.yaml's evaluate stage of a family (evaluate, evaluate_classifier, ...)."""
    return f"evaluate{families.get(family).suffix}"


def metrics_file(family: str) -> str:
    return f"metrics/eval{families.get(family).suffix}.json"


def split_overrides(groups: list[str]) -> list[str]:
    """'train.lr0=0.001 train.epochs=5' (one string or several) -> ['train.lr0=0.001', 'train.epochs=5']."""
    items = [item for group in groups for item in group.split()]
    for item in items:
        key, sep, _ = item.partition("=")
        if not sep or not key:
            raise WildtrainError(f"override '{item}': expected key=value, e.g. train.lr0=0.001")
        if key in SEED_KEYS:
            raise WildtrainError(f"override '{item}': {key} is set per replicate (seeds first_seed..first_seed+n-1)")
    return items


def resolve(root: Path, overrides: list[str]) -> dict:
    """params.yaml with the overrides applied as `dvc exp run -S` would (values as YAML), validated."""
    raw = read_yaml(root / params_mod.PARAMS_FILE, "params file") or {}
    merged = copy.deepcopy(raw)
    for item in overrides:
        key, _, value = item.partition("=")
        node = merged
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
            if not isinstance(node, dict):
                break
        if not isinstance(node, dict) or leaf not in node:
            raise WildtrainError(f"override '{item}': params.yaml has no key '{key}'")
        node[leaf] = yaml.safe_load(value)
    where = "params.yaml" + (f" with {' '.join(overrides)}" if overrides else "")
    params_mod.validate(merged, where)
    return merged


def code_state(root: Path) -> str:
    """Uncommitted changes to tracked files other than params and results (a temp experiment runs them too)."""
    proc = subprocess.run(["git", "diff", "HEAD", "--binary", "--", ".", *[f":(exclude){p}" for p in NOT_CODE]],
                          cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise WildtrainError(f"{root}: git diff failed (a git repository with a first commit is needed for DVC "
                             f"experiments): {proc.stderr.strip()[:200]}")
    return proc.stdout


def params_key(resolved: dict, code: str = "") -> str:
    """The param set's key: the params without their seeds, and uncommitted code (none at a commit). CI matches a
    commit's params.yaml with the replicates made of it (wildtrain.ci.noise)."""
    unseeded = copy.deepcopy(resolved)
    for dotted in SEED_KEYS:
        section, key = dotted.split(".")
        (unseeded.get(section) or {}).pop(key, None)
    blob = json.dumps(unseeded, sort_keys=True, default=str) + "\n" + code
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def param_set(root: Path, overrides: list[str]) -> ParamSet:
    key = params_key(resolve(root, overrides), code_state(root))
    return ParamSet(" ".join(overrides) or "params.yaml", tuple(overrides), key)


def dvc_env(root: Path) -> dict:
    from wildtrain import env

    env.configure(root)
    return os.environ.copy()


def done(root: Path) -> dict[str, dict[str, Any]]:
    """Experiments of the current commit by name -> {metrics file: its data} (files that failed to load left out)."""
    proc = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], cwd=root, env=dvc_env(root),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise WildtrainError(f"dvc exp show failed in {root}: {(proc.stderr or proc.stdout).strip()[-300:]}")
    try:
        rows = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError as e:
        raise WildtrainError(f"dvc exp show --json: unreadable output ({e})") from None
    found = {}
    for row in rows:
        for group in row.get("experiments") or []:
            for rev in group.get("revs") or []:
                name, data = rev.get("name"), rev.get("data") or {}
                if not name or rev.get("error"):
                    continue
                found[name] = {path: m["data"] for path, m in (data.get("metrics") or {}).items() if "data" in m}
    return found


PATTERN = re.compile(r"^rep-(?P<key>[0-9a-f]{8})-(?P<fams>[a-z]+)-s(?P<seed>\d+)$")


def find(experiments: dict[str, dict], pset: ParamSet, fams: tuple[str, ...], seed: int) -> str | None:
    """A finished replicate of this param set and seed that evaluated (at least) these families."""
    for name, metrics in sorted(experiments.items()):
        m = PATTERN.match(name)
        if not m or m["key"] != pset.key or int(m["seed"]) != seed:
            continue
        if set(fams) <= families_of(m["fams"]) and all(metrics_file(f) in metrics for f in fams):
            return name
    return None


def run(root: Path, pset: ParamSet, fams: tuple[str, ...], seed: int, stale: bool) -> str:
    """One replicate as a temp DVC experiment; a failure names the replicate and how to resume."""
    name = pset.experiment(fams, seed)
    dvc = [sys.executable, "-m", "dvc"]
    environ = dvc_env(root)
    if stale:  # an experiment of that name without the metrics (an interrupted or older run): replace it
        subprocess.run([*dvc, "exp", "remove", name], cwd=root, env=environ, capture_output=True)
    sets = [a for kv in [*pset.overrides, *(f"{k}={seed}" for k in SEED_KEYS)] for a in ("-S", kv)]
    cmd = [*dvc, "exp", "run", "--temp", "-n", name, *sets, *(evaluate_stage(f) for f in fams)]
    print(f"replicates: {' '.join(['dvc', *cmd[3:]])}", flush=True)
    code = subprocess.call(cmd, cwd=root, env=environ)
    if code != 0:
        raise WildtrainError(f"replicate {name} (seed {seed}, {pset.label}) failed: dvc exp run exited {code}; "
                             f"fix the cause and rerun the same command to resume (finished replicates are kept)")
    return name
