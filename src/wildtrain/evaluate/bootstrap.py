"""Bootstrap intervals over test units, and the paired difference of two models on the same units.

A test set is a sample; a metric on it is an estimate. Resampling the test *units* (an image, or a group of images
kept together by the split: a flight, a site, the tiles of one image) with replacement and scoring each resample as a
whole dataset gives the spread a metric would have on another test set drawn the same way. Each family turns its
evaluation into a per-unit *table* once (detector: COCOeval's per-image matches; classifier and segmenter: per-unit
confusion matrices); a table scores any resample from integer weights (how often each unit was drawn) in numpy, so
1000 resamples cost a fraction of the evaluation itself. A duplicated unit counts as distinct copies, exactly as if
its images were added again under new ids.

The resamples depend only on (number of units, resamples, seed): two models evaluated on the same test units are
resampled identically, which is what the paired difference (registry gate) needs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import numpy as np

from wildtrain.errors import WildtrainError
from wildtrain.io import atomic_path

CI_SUFFIX = "_ci95"  # metrics/eval*.json: `<metric>_ci95: [low, high]` beside `<metric>`
LOW, HIGH = "_ci95_low", "_ci95_high"  # the same as two scalars: DVC (exp show, metrics) drops list values
# metrics that also get scalar `_ci95_low` / `_ci95_high` keys (dvc exp show columns); the rest only `_ci95` lists
HEADLINE = ("map50_95", "map50", "mask_map50_95", "mask_map50", "count_mae", "accuracy", "f1_macro", "miou",
            "dice_macro")
CHUNK_ELEMENTS = 4_000_000  # per array a table builds while scoring a chunk of resamples (memory bound)


class Table(Protocol):
    kind: str
    units: list[str]  # unit keys, in the table's order

    def scores(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        """[R, units] integer weights -> metric name -> [R] values (nan where undefined). Per-class metrics are named
        `per_class.<class>.<metric>`."""
        ...

    def arrays(self) -> dict[str, np.ndarray]: ...  # what save() writes besides kind and units


def weights(units: int, resamples: int, seed: int) -> np.ndarray:
    """[resamples, units] draw counts: each resample draws `units` units with replacement."""
    rng = np.random.default_rng([seed, units])
    drawn = rng.integers(0, units, size=(resamples, units))
    flat = (drawn + np.arange(resamples)[:, None] * units).ravel()
    return np.bincount(flat, minlength=resamples * units).reshape(resamples, units).astype(np.int32)


def identity(table: Table) -> dict[str, float]:
    """The table's metrics on the test set itself (every unit once)."""
    return {k: float(v[0]) for k, v in table.scores(np.ones((1, len(table.units)), np.int32)).items()}


def distribution(table: Table, w: np.ndarray, chunk: int = 100) -> dict[str, np.ndarray]:
    """The table's metrics on every resample of `w`, scored `chunk` resamples at a time."""
    parts = [table.scores(w[i:i + chunk]) for i in range(0, len(w), chunk)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}


def ci95(values: np.ndarray) -> list[float] | None:
    """Percentile interval [2.5%, 97.5%] over the resamples where the metric is defined (None if in none)."""
    kept = values[~np.isnan(values)]
    if not len(kept):
        return None
    low, high = np.percentile(kept, [2.5, 97.5])
    return [float(low), float(high)]


def intervals(table: Table, resamples: int, seed: int) -> dict[str, list[float] | None]:
    """metric name -> its 95% bootstrap interval."""
    w = weights(len(table.units), resamples, seed)
    return {k: ci95(v) for k, v in distribution(table, w).items()}


def annotate(metrics: dict, found: dict[str, list[float] | None], point: dict[str, float] | None = None,
             scalars: tuple[str, ...] = ()) -> dict:
    """Write each interval beside its metric (`map50_ci95` next to `map50`, `per_class.x.ap50_ci95` inside
    per_class.x); `point` adds metrics that are not in `metrics` yet (counts). Top-level metrics named in `scalars`
    also get `<metric>_ci95_low` / `_high`, which `dvc exp show` displays (it drops lists)."""
    out = dict(metrics)
    for name, value in (point or {}).items():
        _place(out, name, value)
    for name, interval in found.items():
        _place(out, name + CI_SUFFIX, interval)
        if name in scalars:
            out[name + LOW], out[name + HIGH] = (interval or [None, None])
    return _ordered(out)


def with_intervals(metrics: dict, table: Table, settings) -> dict:
    """`metrics` with the 95% interval of every metric the table scores (`settings`: params' bootstrap section);
    table metrics the evaluation did not report (the counting error) are added with their value on the test set.
    The settings are recorded with what a unit was (image, group of images, crop: the units' key prefix)."""
    point = {k: v for k, v in identity(table).items() if not _has(metrics, k)}
    found = intervals(table, settings.resamples, settings.seed)
    out = annotate(metrics, found, point, scalars=HEADLINE)
    out["bootstrap"] = {"resamples": settings.resamples, "seed": settings.seed, "units": len(table.units),
                        "unit": "+".join(sorted({u.split(":", 1)[0] for u in table.units}))}
    return out


def _has(metrics: dict, name: str) -> bool:
    parts = name.split(".")
    if parts[0] == "per_class" and len(parts) == 3:
        return parts[2] in (metrics.get("per_class") or {}).get(parts[1], {})
    return name in metrics


def _place(metrics: dict, name: str, value) -> None:
    parts = name.split(".")
    if parts[0] == "per_class" and len(parts) == 3:
        metrics.setdefault("per_class", {}).setdefault(parts[1], {})[parts[2]] = value
    else:
        metrics[name] = None if isinstance(value, float) and np.isnan(value) else value


def _ordered(metrics: dict) -> dict:
    """Intervals right after their metric, so a reader sees `map50`, `map50_ci95`, ... together."""
    def interval_of(key: str, d: dict) -> bool:
        return any(key.endswith(s) and key[:-len(s)] in d for s in (CI_SUFFIX, LOW, HIGH))

    out: dict = {}
    for k, v in metrics.items():
        if interval_of(k, metrics):
            continue
        out[k] = {c: _ordered(m) if isinstance(m, dict) else m for c, m in v.items()} \
            if k == "per_class" and isinstance(v, dict) else v
        out.update({k + s: metrics[k + s] for s in (CI_SUFFIX, LOW, HIGH) if k + s in metrics})
    return out


def paired(challenger: Table, champion: Table, metric: str, resamples: int, seed: int
           ) -> tuple[float, list[float] | None]:
    """Challenger minus champion on `metric`: the difference on the test set, and its 95% interval from the same
    resamples of the same units for both (a paired bootstrap: what both got right or wrong on a unit cancels)."""
    if challenger.kind != champion.kind:
        raise WildtrainError(f"cannot compare a {challenger.kind} evaluation with a {champion.kind} one")
    if sorted(challenger.units) != sorted(champion.units):
        raise WildtrainError("the two evaluations are on different test units")
    order = {u: i for i, u in enumerate(champion.units)}
    align = np.array([order[u] for u in challenger.units])  # champion's columns in the challenger's unit order
    w = weights(len(challenger.units), resamples, seed)
    aligned = np.zeros_like(w)
    aligned[:, align] = w
    ours, theirs = distribution(challenger, w), distribution(champion, aligned)
    if metric not in ours or metric not in theirs:
        raise WildtrainError(f"gate_metric '{metric}' has no per-unit table (those with one: "
                             f"{', '.join(sorted(k for k in ours if not k.startswith('per_class.')))})")
    delta = identity(challenger)[metric] - identity(champion)[metric]
    return float(delta), ci95(ours[metric] - theirs[metric])


def save(path: Path, table: Table, meta: dict | None = None) -> None:
    """An .npz (no pickles): the table's arrays, its kind and units, and `meta` (JSON) such as evaluation_hash."""
    info = {"kind": table.kind, "units": list(table.units), **(meta or {})}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, meta=np.array(json.dumps(info)), **table.arrays())


def load(path: Path, kind: type) -> tuple[Table, dict]:
    """(table, meta) from save(), as a `kind` table (its `from_arrays`); a file that is not one is one clear line."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            arrays = {k: z[k] for k in z.files if k != "meta"}
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        raise WildtrainError(f"{path}: not an evaluation table ({' '.join(str(e).split())[:200]})") from None
    if meta.get("kind") != kind.kind:
        raise WildtrainError(f"{path}: a {meta.get('kind')} table, not a {kind.kind} one")
    try:
        return kind.from_arrays(meta["units"], arrays), meta
    except KeyError as e:
        raise WildtrainError(f"{path}: evaluation table lacks {e}") from None


class ConfusionTable:
    """Per-unit confusion matrices [unit, actual, predicted]: a resample's matrix is their weighted sum, scored by
    the subclass like the evaluation itself (classification.ClassificationTable, segmentation.SegmentationTable)."""

    kind = "confusion"

    def __init__(self, units: list[str], matrices: np.ndarray, class_names: list[str]):
        self.units, self.class_names = list(units), list(class_names)
        self.matrices = np.asarray(matrices, np.int64)

    @classmethod
    def from_labels(cls, unit_of: list[str], actual: np.ndarray, predicted: np.ndarray, class_names: list[str]):
        units = sorted(set(unit_of))
        index = {u: i for i, u in enumerate(units)}
        n = len(class_names)
        flat = (np.array([index[u] for u in unit_of], np.int64) * n + np.asarray(actual, np.int64)) * n \
            + np.asarray(predicted, np.int64)
        return cls(units, np.bincount(flat, minlength=len(units) * n * n).reshape(len(units), n, n), class_names)

    @classmethod
    def from_arrays(cls, units: list[str], a: dict[str, np.ndarray]):
        return cls(units, a["matrices"], [str(c) for c in a["class_names"]])

    def scores(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        return self.score(np.einsum("ru,uij->rij", weights.astype(np.float64), self.matrices))

    def score(self, cm: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def arrays(self) -> dict[str, np.ndarray]:
        return {"matrices": self.matrices, "class_names": np.array(self.class_names)}
