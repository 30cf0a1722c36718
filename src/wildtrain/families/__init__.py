"""Model families by name. A family is a package (or module) here exposing `FAMILY`; it is imported by name, so a
stage that runs one family depends on that family's code only (dvc.yaml names it on the stage's command line)."""

from __future__ import annotations

import importlib
from pathlib import Path

from wildtrain.errors import WildtrainError
from wildtrain.contract import Family, ModelCard, Predictor

FAMILIES = ("detector", "classifier", "two_stage", "segmenter", "yoloseg")
OPT_IN = ("yoloseg",)  # families off the default pipeline (no dvc.yaml stages): `make instances` runs yoloseg
IN_PIPELINE = tuple(f for f in FAMILIES if f not in OPT_IN)  # those with dvc.yaml stages (replicates, CI reruns)


def get(name: str) -> Family:
    if name not in FAMILIES:
        raise WildtrainError(f"unknown model family '{name}' (available: {', '.join(FAMILIES)})")
    return importlib.import_module(f"wildtrain.families.{name}").FAMILY


def load(model_dir: str | Path, device: str = "auto") -> Predictor:
    """Any trained model folder -> its Predictor, whichever family made it."""
    card = ModelCard.load(Path(model_dir))
    return get(card.family).load(Path(model_dir), device)
