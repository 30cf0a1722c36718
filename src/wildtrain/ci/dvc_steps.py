"""The DVC side of a CI rerun: remote, pull, status before the rerun (why each stage is stale), the rerun, and what
each stage that ran changed in dvc.lock (why a downstream stage ran)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from wildtrain.errors import WildtrainError


def dvc(root: Path, *args: str, echo: bool = False) -> subprocess.CompletedProcess:
    """`python -m dvc ARGS` in the project; `echo`: its output also goes to this process's stdout as it runs (a
    rerun takes minutes and CI logs should show its progress)."""
    cmd = [sys.executable, "-m", "dvc", *args]
    if not echo:
        return subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=os.environ.copy())
    lines: list[str] = []
    with subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=os.environ.copy()) as proc:
        for line in proc.stdout:
            print(line, end="", flush=True)
            lines.append(line)
    return subprocess.CompletedProcess(cmd, proc.returncode, "".join(lines), "")


def default_remote(root: Path) -> str | None:
    """The default remote's name, or None when none is configured (then every missing output is recomputed)."""
    proc = dvc(root, "remote", "default")
    name = proc.stdout.strip()
    return name if proc.returncode == 0 and name and "No default remote" not in name else None


def pull(root: Path) -> tuple[bool, str]:
    """`dvc pull --run-cache --allow-missing`: outputs of HEAD's dvc.lock and earlier runs' records; what the remote
    lacks (a PR whose outputs were never pushed) is left missing, so the rerun recomputes it."""
    proc = dvc(root, "pull", "--run-cache", "--allow-missing")
    lines = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    return proc.returncode == 0, (lines[-1] if lines else "")


def status(root: Path) -> dict:
    """`dvc status --json`: stage (or .dvc file) -> what changed, before anything reruns."""
    proc = dvc(root, "status", "--json")
    if proc.returncode != 0:
        tail = " ".join((proc.stderr or proc.stdout).split())[-300:]
        raise WildtrainError(f"dvc status failed: {tail}")
    text = proc.stdout.strip()
    start = text.find("{")
    return json.loads(text[start:]) if start >= 0 else {}


def _describe(kind: str, changes) -> list[str]:
    if not isinstance(changes, dict):
        return [kind]
    out = []
    for path, what in changes.items():
        if isinstance(what, dict):  # params: {params.yaml: {section: modified}}
            out += [f"param {key} {state}" for key, state in what.items()]
        else:
            out.append(f"{kind.removeprefix('changed ').rstrip('s')} {path} {what}")
    return out


def stale_reasons(found: dict) -> dict[str, list[str]]:
    """`dvc status --json` -> stage -> readable reasons ('param train modified', 'dep data/source/survey modified',
    'out models deleted')."""
    reasons: dict[str, list[str]] = {}
    for stage, entries in found.items():
        name = stage.split(":")[-1]
        for entry in entries if isinstance(entries, list) else [entries]:
            if isinstance(entry, str):
                reasons.setdefault(name, []).append(entry)
                continue
            for kind, changes in entry.items():
                reasons.setdefault(name, []).extend(_describe(kind, changes))
    return reasons


RAN = re.compile(r"Running stage '([^']+)'")
RESTORED = re.compile(r"Stage '([^']+)' is cached - skipping run")


def repro(root: Path) -> tuple[int, list[str], list[str], str]:
    """`dvc repro` -> (exit code, stages run, stages restored from the run-cache, output)."""
    proc = dvc(root, "repro", echo=True)
    out = proc.stdout + proc.stderr
    return proc.returncode, RAN.findall(out), RESTORED.findall(out), out


def _paths(entries) -> list[str]:
    return [next(iter(e)) if isinstance(e, dict) else str(e) for e in entries or []]


def plan(pipeline: dict, stale: list[str]) -> list[str]:
    """The stages `dvc repro` would run, in dvc.yaml's order: the stale ones and every stage that depends on an
    output of one (metrics files included). Unlike `dvc repro --dry` it needs no outputs in the workspace."""
    stages = pipeline.get("stages") or {}
    outs = {name: _paths(s.get("outs")) + _paths(s.get("metrics")) + _paths(s.get("plots"))
            for name, s in stages.items()}
    chosen: list[str] = []
    for name, s in stages.items():  # dvc.yaml lists stages after the ones they depend on
        deps = _paths(s.get("deps"))
        feeds = any(d == o or d.startswith(o.rstrip("/") + "/") or o.startswith(d.rstrip("/") + "/")
                    for up in chosen for o in outs[up] for d in deps)
        if name in stale or feeds:
            chosen.append(name)
    return chosen


def upstream(pipeline: dict, stage: str) -> list[str]:
    """`stage` and every stage whose outputs it reads, directly or through others (what made its inputs)."""
    stages = pipeline.get("stages") or {}
    outs = {name: _paths(s.get("outs")) + _paths(s.get("metrics")) + _paths(s.get("plots"))
            for name, s in stages.items()}
    chosen, todo = [], [stage]
    while todo:
        name = todo.pop()
        if name in chosen or name not in stages:
            continue
        chosen.append(name)
        deps = _paths(stages[name].get("deps"))
        todo += [up for up, paths in outs.items() for o in paths for d in deps
                 if d == o or d.startswith(o.rstrip("/") + "/") or o.startswith(d.rstrip("/") + "/")]
    return [name for name in stages if name in chosen]


def params_of(pipeline: dict, names: list[str]) -> list[str]:
    """The params.yaml keys (sections or dotted keys) that these stages list."""
    keys: list[str] = []
    for name in names:
        for entry in (pipeline.get("stages") or {}).get(name, {}).get("params") or []:
            found = entry if isinstance(entry, str) else next((v for f, v in entry.items() if f == "params.yaml"), [])
            keys += [found] if isinstance(found, str) else list(found or [])
    return sorted(set(keys))


def lock_changes(old: dict | None, new: dict | None, stage: str) -> list[str]:
    """What differs between two dvc.lock entries of a stage: deps by hash, params by value."""
    before = ((old or {}).get("stages") or {}).get(stage) or {}
    after = ((new or {}).get("stages") or {}).get(stage) or {}
    if not before:
        return ["new in dvc.lock"]

    def deps(entry: dict) -> dict:
        return {d["path"]: d.get("md5") or d.get("hash") for d in entry.get("deps") or []}

    def params(entry: dict) -> dict:
        return {f"{k}" if f == "params.yaml" else f"{f}:{k}": v
                for f, keys in (entry.get("params") or {}).items() for k, v in keys.items()}

    out = [f"dep {p} changed" for p, h in deps(after).items() if deps(before).get(p) != h]
    out += [f"param {k} changed" for k, v in params(after).items() if params(before).get(k) != v]
    return out
