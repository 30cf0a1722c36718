"""The trained models on both sides: the CPU and kernels each was trained with (the model card's `training.repro.*`,
written by the train stage), and the register gate's paired test of HEAD's model against BASE's on the same test
units (wildtrain.registry.gate, as if BASE's model were the champion)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from wildtrain import layout, registry
from wildtrain.ci import git_files
from wildtrain.errors import WildtrainError

TRAINED = {"detector": "models", "classifier": "models_classifier", "segmenter": "models_segmenter"}
REGISTERED = ("detector", "classifier", "two_stage", "segmenter")


def _repro(card: dict | None) -> dict | None:
    training = (card or {}).get("training") or {}
    found = {k.removeprefix("repro."): v for k, v in training.items() if k.startswith("repro.")}
    return found or None


def _card(path: Path | None) -> dict | None:
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def training_records(root: Path, base: str, tmp: Path) -> dict[str, dict]:
    """family -> {"base": repro record or None, "head": ...} for the trained families."""
    out = {}
    for family, folder in TRAINED.items():
        card = f"{folder}/{layout.MODEL_CARD}"
        base_card = git_files.dvc_output(root, base, card, tmp / "base" / card)
        out[family] = {"base": _repro(_card(base_card)), "head": _repro(_card(root / card))}
    return out


def this_runner() -> dict:
    """The CPU and kernels of the machine running the rerun (what a stage that trains here records)."""
    from wildtrain import env

    return {k.removeprefix("repro."): v for k, v in env.reproducibility("cpu").items()}


def _suffix(family: str) -> str:
    from wildtrain import families

    return families.get(family).suffix


def gate_vs_base(root: Path, base: str, family: str, tmp: Path) -> dict | None:
    """The gate's decision for HEAD's model with BASE's model as champion, from both per-unit tables (HEAD's in the
    workspace, BASE's from the DVC cache or remote). None where the family has no register record at HEAD."""
    from wildtrain import families
    from wildtrain.evaluate import bootstrap

    suffix = _suffix(family)
    record = _read(root / f"metrics/register{suffix}.json")
    if record is None:
        return None
    metric = record.get("gate_metric")
    evaluation = _read(root / f"metrics/eval{suffix}.json") or {}
    table_file = layout.tables_file(layout.Paths(), suffix, evaluation.get("split", "test"))
    kind = families.get(family).table_type()
    if not (root / table_file).is_file():
        return {"metric": metric, "reason": f"HEAD's {table_file} is not in the workspace (neither pulled nor rerun)"}
    try:
        head_table, head_meta = bootstrap.load(root / table_file, kind)
    except WildtrainError as e:
        return {"metric": metric, "reason": f"HEAD's table: {e}"}
    base_file = git_files.dvc_output(root, base, table_file, tmp / "base" / table_file)
    if base_file is None:
        return {"metric": metric, "reason": f"BASE's {table_file} is neither in the DVC cache nor on the remote"}
    try:
        base_table, base_meta = bootstrap.load(base_file, kind)
    except WildtrainError as e:
        return {"metric": metric, "reason": f"BASE's table: {e}"}
    base_metrics = git_files.json_at(root, base, f"metrics/eval{suffix}.json") or {}
    label = f"BASE {base[:8]}"
    champion = SimpleNamespace(version=label, tags={
        "evaluation_hash": base_meta.get("evaluation_hash"), metric: base_metrics.get(metric)})

    def not_here(_mv):
        raise WildtrainError("BASE's model was scored on other test units or with another evaluator (a changed "
                             "test set): no paired comparison")

    boot = record.get("bootstrap") or {}
    settings = registry.Bootstrap(int(boot.get("resamples", 1000)), int(boot.get("seed", 0)),
                                  float(record.get("gate_margin") or 0.0))
    value = (evaluation or {}).get(metric)
    if value is None:
        return {"metric": metric, "reason": f"metrics/eval{suffix}.json has no {metric}"}
    decision = registry.gate(metric, float(value), head_meta.get("evaluation_hash"), head_table, champion,
                             lambda _mv: base_table, not_here, settings)
    reason = decision.reason.replace(f"champion v{label}", label).replace("becomes champion", "would become champion")
    return {"metric": metric, "promote": decision.champion, "reason": reason, "delta": decision.delta,
            "delta_ci95": decision.delta_ci95}


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def registry_records(root: Path) -> dict[str, dict]:
    """family -> metrics/register*.json of this workspace (the register stage's own decision)."""
    out = {}
    for family in REGISTERED:
        found = _read(root / f"metrics/register{_suffix(family)}.json")
        if found:
            out[family] = found
    return out
