"""The search space from params.yaml `tune.space`, checked whole before any training, then sampled per trial.

Keys are the dotted names `dvc exp run -S` takes (`train.lr0`, `classifier.lr`, `segmenter.lr`), so the best trial
maps back onto the pipeline one to one. The section the keys name says which family a study tunes (one per study):
`train` the detector, `classifier` and `segmenter` theirs. Each dimension is checked against that section's
dataclass: the key must exist and every value the space can produce at its ends (or any choice) must pass the same
validation params.yaml does.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any

from wildtrain import params as params_mod
from wildtrain.errors import WildtrainError
from wildtrain.params import Params

SECTIONS = {"train": "detector", "classifier": "classifier", "segmenter": "segmenter"}  # params section -> family
_DATACLASSES = {"train": params_mod.Train, "classifier": params_mod.Classifier, "segmenter": params_mod.Segmenter}
TYPES = ("float", "int", "categorical")
_SPEC_KEYS = {"float": {"type", "low", "high", "log", "step"}, "int": {"type", "low", "high", "log", "step"},
              "categorical": {"type", "choices"}}


@dataclass(frozen=True)
class Dim:
    key: str  # "train.lr0"
    kind: str  # float | int | categorical
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()

    @property
    def name(self) -> str:
        return self.key.split(".", 1)[1]

    @property
    def section(self) -> str:
        return self.key.split(".", 1)[0]

    def distribution(self):
        import optuna.distributions as d

        if self.kind == "float":
            return d.FloatDistribution(self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return d.IntDistribution(self.low, self.high, log=self.log, step=self.step or 1)
        return d.CategoricalDistribution(self.choices)


def _number(value: Any, integer: bool) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if integer else isinstance(value, (int, float)) and math.isfinite(value)


def hints(section: str) -> dict:
    """The section's params and their types; nested sections (augment, mmdet, phases) are not tunable scalars."""
    return {k: v for k, v in typing.get_type_hints(_DATACLASSES[section]).items() if not dataclasses.is_dataclass(v)}


def _dim(key: str, spec: Any, file: str) -> Dim:
    where = f"{file}: tune.space"

    def bad(msg: str) -> WildtrainError:
        return WildtrainError(f"{where}.{key}: {msg}")

    section, _, name = key.partition(".")
    if section not in SECTIONS or not name:
        raise bad(f"only {', '.join(f'{s}.<key>' for s in SECTIONS)} can be tuned (e.g. train.lr0, classifier.lr)")
    known = hints(section)
    if name not in known:
        raise bad(f"'{name}' is not a {section} param (known: {', '.join(sorted(known))})")
    if not isinstance(spec, dict):
        raise bad(f"expected a mapping with `type`, got {spec!r}")
    kind = spec.get("type")
    if kind not in TYPES:
        raise bad(f"type must be one of {', '.join(TYPES)}, got {kind!r}")
    unknown = sorted(set(spec) - _SPEC_KEYS[kind])
    if unknown:
        raise bad(f"unknown key '{unknown[0]}' for type {kind} (known: {', '.join(sorted(_SPEC_KEYS[kind]))})")
    field_type = known[name]
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise bad("choices must be a non-empty list")
        for c in choices:
            if c is not None and not isinstance(c, (bool, int, float, str)):
                raise bad(f"choice {c!r} is not a scalar")
            params_mod._coerce(c, field_type, f"tune.space.{key} choice", file)
        if len(set(map(repr, choices))) != len(choices):
            raise bad("choices must be distinct")
        return Dim(key, kind, choices=tuple(choices))
    integer = kind == "int"
    if field_type is int and not integer:
        raise bad(f"{section}.{name} is an int: use type int or categorical")
    if field_type not in (int, float):
        raise bad(f"{section}.{name} is not numeric: use type categorical")
    low, high, log, step = spec.get("low"), spec.get("high"), spec.get("log", False), spec.get("step")
    if not _number(low, integer) or not _number(high, integer):
        raise bad(f"low and high must be {'integers' if integer else 'numbers'}, got low={low!r} high={high!r}")
    if not low < high:
        raise bad(f"low ({low}) must be < high ({high})")
    if not isinstance(log, bool):
        raise bad(f"log must be true or false, got {log!r}")
    if log and low <= 0:
        raise bad(f"log scale needs low > 0, got low={low}")
    if step is not None:
        if not _number(step, integer) or step <= 0:
            raise bad(f"step must be a positive {'integer' if integer else 'number'}, got {step!r}")
        if log:
            raise bad("step and log cannot be combined")
    return Dim(key, kind, low=low, high=high, log=log, step=step)


def parse(space: Any, base: Params, file: str = "params.yaml") -> list[Dim]:
    """tune.space -> dimensions; raises one clear line for the first problem found."""
    where = f"{file}: tune.space"
    if not isinstance(space, dict) or not space:
        raise WildtrainError(f"{where}: expected a non-empty mapping of train.<key> (or classifier.<key>, "
                             f"segmenter.<key>): {{type: ...}}, got {space!r}")
    dims = [_dim(str(key), spec, file) for key, spec in space.items()]
    sections = sorted({d.section for d in dims}, key=list(SECTIONS).index)
    if len(sections) > 1:
        raise WildtrainError(f"{where}: one study tunes one family; the keys name {' and '.join(sections)} "
                             f"(use one tune.study per section)")
    for d in dims:  # the ends of each range and every choice must make valid params
        for value in d.choices or (d.low, d.high):
            try:
                with_values(base, {d.key: value}, file)
            except WildtrainError as e:
                reason = str(e).split(": ", 1)[-1]
                raise WildtrainError(f"{where}.{d.key}: value {value!r} is refused ({reason})") from None
    return dims


def section(dims: list[Dim]) -> str:
    """The params section a (parsed) space tunes."""
    return dims[0].section


def family(dims: list[Dim]) -> str:
    return SECTIONS[section(dims)]


def with_values(base: Params, values: dict[str, Any], file: str = "tune trial") -> Params:
    """Params with the sampled values (all of one section), validated as params.yaml would be."""
    p = base
    for name in {k.split(".", 1)[0] for k in values}:
        types = hints(name)
        given = {k.split(".", 1)[1]: v for k, v in values.items() if k.split(".", 1)[0] == name}
        coerced = {k: params_mod._coerce(v, types[k], f"{name}.{k}", file) for k, v in given.items()}
        p = dataclasses.replace(p, **{name: dataclasses.replace(getattr(p, name), **coerced)})
    params_mod._check_values(p, file)
    return p


def sample(trial, dims: list[Dim]) -> dict[str, Any]:
    """Ask the trial for one value per dimension; keys stay dotted (`train.lr0`)."""
    return {d.key: _suggest(trial, d) for d in dims}


def _suggest(trial, d: Dim) -> Any:
    if d.kind == "float":
        return trial.suggest_float(d.key, d.low, d.high, log=d.log, step=d.step)
    if d.kind == "int":
        return trial.suggest_int(d.key, d.low, d.high, log=d.log, step=d.step or 1)
    return trial.suggest_categorical(d.key, list(d.choices))


# What a study may optimise and prune on, per family (the detector: COCOeval keys of metrics/eval.json).
OBJECTIVES = {"classifier": ("f1_macro", "accuracy", "precision_macro", "recall_macro"),
              "segmenter": ("miou", "dice_macro", "pixel_accuracy")}
EPOCH_METRICS = {"classifier": ("val/f1_macro", "val/accuracy", "val/loss", "train/loss"),
                 "segmenter": ("val/miou", "val/pixel_accuracy", "val/loss", "train/loss")}


def objectives(family: str) -> tuple[str, ...]:
    from wildtrain.evaluate.detection import STAT_NAMES

    return OBJECTIVES.get(family, STAT_NAMES)
