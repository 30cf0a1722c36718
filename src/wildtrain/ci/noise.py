"""Each metric's change set against its noise band, from what the pipeline already records (README "Comparing runs"):
- test-set band: the bootstrap 95% intervals in metrics/eval*.json (`<metric>_ci95`), half-widths of BASE and HEAD
  combined as for a difference of two independent estimates, sqrt(h_base^2 + h_head^2);
- seed band: the seed replicates of BASE's training recipe (reports/replicates/*.json: the same param-set key, or per
  family the same values of every param its stages read), the 95% spread of the difference of two trainings,
  1.96 * sqrt(2) * sd.
The band is the wider of the two; a delta larger than it is "beyond noise", else "within noise". A metric with
neither has "no band"."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

from wildtrain import params as params_mod
from wildtrain.ci import dvc_steps, git_files
from wildtrain.replicates.experiments import SEED_KEYS, params_key

FAMILY_FILES = {"detector": "metrics/eval.json", "classifier": "metrics/eval_classifier.json",
                "two_stage": "metrics/eval_two_stage.json", "segmenter": "metrics/eval_segmenter.json"}
CI, LOW, HIGH = "_ci95", "_ci95_low", "_ci95_high"
Z95 = 1.96


@dataclass(frozen=True)
class Row:
    family: str
    metric: str  # dotted inside the file: map50, per_class.zebra.ap50
    base: float | None
    head: float | None
    base_ci: list[float] | None
    head_ci: list[float] | None
    test_band: float | None
    seed_band: float | None

    @property
    def delta(self) -> float | None:
        return None if self.base is None or self.head is None else self.head - self.base

    @property
    def band(self) -> float | None:
        bands = [b for b in (self.test_band, self.seed_band) if b is not None]
        return max(bands) if bands else None

    @property
    def label(self) -> str:
        if self.delta is None:
            return "new" if self.base is None else "gone"
        if self.band is None:
            return "no band"
        return "beyond noise" if abs(self.delta) > self.band else "within noise"


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def leaves(metrics: dict, prefix: str = "") -> dict[str, tuple[float, list[float] | None]]:
    """dotted metric -> (value, its 95% interval or None); the interval keys themselves are not metrics."""
    out: dict[str, tuple[float, list[float] | None]] = {}
    for key, value in (metrics or {}).items():
        if isinstance(value, dict):
            out.update(leaves(value, f"{prefix}{key}."))
        elif _number(value) and not key.endswith((LOW, HIGH)):
            ci = metrics.get(key + CI)
            ok = isinstance(ci, list) and len(ci) == 2 and all(_number(c) for c in ci)
            out[prefix + key] = (float(value), [float(c) for c in ci] if ok else None)
    return out


def _half(ci: list[float] | None) -> float | None:
    return None if ci is None else (ci[1] - ci[0]) / 2


def test_band(base_ci: list[float] | None, head_ci: list[float] | None) -> float | None:
    halves = [h for h in (_half(base_ci), _half(head_ci)) if h is not None]
    if not halves:
        return None
    if len(halves) == 1:
        return math.sqrt(2) * halves[0]
    return math.sqrt(halves[0] ** 2 + halves[1] ** 2)


def seed_band(sd: float | None) -> float | None:
    return None if sd is None else Z95 * math.sqrt(2) * sd


FAMILY_STAGES = {"detector": "evaluate", "classifier": "evaluate_classifier", "two_stage": "evaluate_two_stage",
                 "segmenter": "evaluate_segmenter"}


def _value(params: dict, dotted: str):
    node = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return "<absent>"
        node = node[part]
    return node


def _with_defaults(params: dict) -> dict:
    """params.yaml as the code reads it: a key an older file lacks takes the default that keeps its old behaviour.
    A file today's code refuses stays as written (then only keys both sides spell alike can match)."""
    try:
        return params_mod.as_dict(params_mod.validate(copy.deepcopy(params), "params.yaml"))
    except Exception:  # noqa: BLE001 — e.g. a key renamed since: compare the raw values
        return params


def chain_params(pipeline: dict, family: str, params: dict) -> dict:
    """The params every stage behind a family's evaluation reads (BASE's dvc.yaml), seeds left out: equal values
    mean the same training recipe for that family, whatever else params.yaml holds."""
    keys = dvc_steps.params_of(pipeline, dvc_steps.upstream(pipeline, FAMILY_STAGES[family]))
    unseeded = _with_defaults(params)
    for dotted in SEED_KEYS:
        section, key = dotted.split(".")
        (unseeded.get(section) or {}).pop(key, None)
    return {k: _value(unseeded, k) for k in keys}


def matching_replicates(root: Path, base: str, base_params: dict | None) -> dict | None:
    """BASE's seed replicates of its own training recipe, or None. A report made of BASE's whole params.yaml (same
    param-set key, no overrides) holds for every family; else, per family, one made at a commit whose params agree
    with BASE's on every key the family's stages read (`matched`), so adding a section or another family's key to
    params.yaml does not throw a family's seed band away."""
    if not base_params:
        return None
    want = params_key(base_params)
    pipeline = git_files.yaml_at(root, base, "dvc.yaml") or {}
    best = None
    for path in git_files.list_at(root, base, "reports/replicates"):
        if not path.endswith(".json"):
            continue
        try:
            found = git_files.json_at(root, base, path)
            if not isinstance(found, dict) or found.get("kind") != "replicates":
                continue
            pset = found.get("param_set") or {}
            if pset.get("overrides"):
                continue
            families = [f for f in found.get("families") or [] if f in FAMILY_STAGES]
            if pset.get("key") == want:
                return {"path": path, **found, "matched": families, "match": "param set"}
            made_with = git_files.yaml_at(root, found["commit"], "params.yaml") if found.get("commit") else None
        except Exception:  # noqa: BLE001 — an unreadable report (or a commit this clone lacks) is no band, not a failure
            continue
        if not made_with:
            continue
        matched = [f for f in families
                   if chain_params(pipeline, f, made_with) == chain_params(pipeline, f, base_params)]
        if matched:
            found = {"path": path, **found, "matched": matched, "match": "family params",
                     "distance": git_files.distance(root, found["commit"], base)}
            if best is None or (-len(matched), found["distance"]) < (-len(best["matched"]), best["distance"]):
                best = found  # most families, then the report made nearest BASE (its code is likeliest BASE's)
    return best


def rows(family: str, base: dict | None, head: dict | None, replicates: dict | None) -> list[Row]:
    """Every numeric metric of a family's evaluation in BASE or HEAD, with its bands."""
    b, h = leaves(base or {}), leaves(head or {})
    summary = (replicates or {}).get("summary") or {}
    out = []
    for metric in list(h) + [m for m in b if m not in h]:
        bv, bci = b.get(metric, (None, None))
        hv, hci = h.get(metric, (None, None))
        matched = (replicates or {}).get("matched")
        sd = (summary.get(f"{family}.{metric}") or {}).get("sd") if matched is None or family in matched else None
        out.append(Row(family, metric, bv, hv, bci, hci, test_band(bci, hci),
                       seed_band(sd if _number(sd) else None)))
    return out
