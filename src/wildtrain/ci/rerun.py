"""`wildtrain ci-rerun --base REF` (`make ci-rerun BASE=REF`): reproduce HEAD's committed config after pulling what
the remote has, so only the stages a change touches rerun, then write reports/ci.md against BASE. Exits non-zero
only when something fails (a rerun that breaks, a bad ref), never because a metric moved."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import yaml

from wildtrain import env
from wildtrain.ci import config, dvc_steps, git_files, models, noise, plots, report
from wildtrain.errors import WildtrainError

REPORT = "reports/ci.md"


def _stage_names(root: Path) -> list[str]:
    return list((yaml.safe_load((root / "dvc.yaml").read_text()) or {}).get("stages") or {})


def _workspace_lock(root: Path) -> dict | None:
    f = root / "dvc.lock"
    return yaml.safe_load(f.read_text()) if f.is_file() else None


def _params_diff(root: Path, base: str) -> dict:
    proc = dvc_steps.dvc(root, "params", "diff", base, "--json")
    if proc.returncode != 0:
        raise WildtrainError(f"dvc params diff {base[:12]} failed: {' '.join(proc.stderr.split())[-300:]}")
    text = proc.stdout.strip()
    return json.loads(text[text.find("{"):]) if "{" in text else {}


def _metric_rows(root: Path, base: str, base_cfg: dict, replicates: dict | None) -> list[noise.Row]:
    if base_cfg["lock"] is None:
        return []
    rows = []
    for family, path in noise.FAMILY_FILES.items():
        b = git_files.json_at(root, base, path)
        f = root / path
        h = json.loads(f.read_text()) if f.is_file() else None
        if b or h:
            rows += noise.rows(family, b, h, replicates)
    return rows


def ci_rerun(root: Path, base_ref: str, out: Path, dry_run: bool = False, pull: bool = True) -> dict:
    """The whole CI rerun; returns what the report shows. Raises WildtrainError on a failure."""
    base = git_files.commit(root, base_ref)
    head = git_files.commit(root, "HEAD")
    config.check_committed(root)
    base_cfg = config.describe(root, base)

    remote = dvc_steps.default_remote(root) if pull else None
    if not pull:
        remote_note = ("Not pulled (`--no-pull`, the weekly drift check): every stage whose outputs are not in the "
                       "local cache was recomputed on this machine.")
        print(f"ci-rerun: {remote_note}", flush=True)
    elif remote:
        print(f"ci-rerun: dvc pull from remote '{remote}' (outputs of HEAD's dvc.lock and the run-cache)", flush=True)
        ok, last = dvc_steps.pull(root)
        remote_note = (f"Pulled from DVC remote `{remote}` before the rerun ({last or 'done'}); only stages whose "
                       f"deps or params changed reran." if ok else
                       f"`dvc pull` from remote `{remote}` did not bring everything ({last}); what is missing was "
                       f"recomputed.")
    else:
        remote_note = ("No DVC remote is configured, so nothing was pulled: every stage whose outputs are not in the "
                       "local cache was recomputed (docs/how-to/ci-reruns.md: add a remote).")
        print(f"ci-rerun: {remote_note}", flush=True)

    stale = dvc_steps.stale_reasons(dvc_steps.status(root))
    stages = _stage_names(root)
    stale = {s: why for s, why in stale.items() if s in stages or s.endswith(".dvc")}
    old_lock = _workspace_lock(root)
    code, ran, restored, output = 0, [], [], ""
    if dry_run:
        pipeline = yaml.safe_load((root / "dvc.yaml").read_text()) or {}
        source_stages = [s for s in stages if any(w.startswith("dep data/source") for w in stale.get(s, []))]
        ran = dvc_steps.plan(pipeline, [s for s in stale if s in stages] + source_stages)
    elif stale:
        code, ran, restored, output = dvc_steps.repro(root)
    if code != 0:
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise WildtrainError(f"dvc repro failed (exit {code}); its last lines:\n{tail}")
    new_lock = _workspace_lock(root)
    order = [s for s in stages if s in ran or s in restored]
    downstream = {s: dvc_steps.lock_changes(old_lock, new_lock, s) for s in order if s not in stale}
    if dry_run:
        downstream = {s: ["its deps are outputs of a stage above"] for s in order if s not in stale}

    replicates = noise.matching_replicates(root, base, base_cfg["params"])
    with tempfile.TemporaryDirectory(prefix="wildtrain-ci-") as tmp:
        gates = {f: models.gate_vs_base(root, base, f, Path(tmp)) for f in models.REGISTERED} if base_cfg["lock"] \
            else {}
        training = models.training_records(root, base, Path(tmp))
    for old in out.parent.glob(f"{out.stem}-*.png"):
        old.unlink()
    written = plots.write(root, base, out.parent, out.stem) if base_cfg["lock"] else []
    result = {
        "head": head, "base": base, "base_ref": base_ref, "dry_run": dry_run, "config": base_cfg,
        "remote": remote, "remote_note": remote_note, "stale": stale, "ran": ran, "restored": restored,
        "order": order, "downstream": downstream, "all_stages": stages,
        "params_diff": _params_diff(root, base), "rows": _metric_rows(root, base, base_cfg, replicates),
        "replicates": replicates, "gates": gates, "registered": models.registry_records(root),
        "tracking": _tracking_label(root), "training": training, "runner": models.this_runner(),
        "plots": [p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p) for p in written],
    }
    report.write(out, result)
    return result


def _tracking_label(root: Path) -> str:
    """Where the register stage registered: the team server's URI without credentials, or the local store."""
    uri = env.tracking_uri(root)
    if uri.startswith("sqlite:"):
        return "this checkout's local MLflow store"
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


def main(p, root: Path, base_ref: str, out: str, dry_run: bool, pull: bool = True) -> None:
    """CLI entry (wildtrain.pipeline.entry.run gives one-line errors and exit code 2)."""
    if not base_ref:
        raise WildtrainError("give the base to compare with: make ci-rerun BASE=origin/main (a branch, tag or sha)")
    target = Path(out) if Path(out).is_absolute() else Path(root) / out
    r = ci_rerun(Path(root), base_ref, target, dry_run, pull)
    beyond = sum(1 for x in r["rows"] if x.label == "beyond noise")
    what = ("nothing to rerun" if not r["order"] else
            f"{'would rerun' if dry_run else 'reran'} {len(r['ran'])} stages"
            + (f", restored {len(r['restored'])}" if r["restored"] else ""))
    print(f"ci-rerun: {what}; {beyond} metrics beyond noise vs {base_ref}; report {target}")
