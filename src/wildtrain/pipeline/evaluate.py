"""Stages `evaluate`, `evaluate_classifier`, `evaluate_two_stage`, `evaluate_segmenter`: the pipeline's model of a
family, loaded
through the family interface and scored on the held-out split by the family's one evaluator."""

from __future__ import annotations

from pathlib import Path

from wildtrain import families
from wildtrain.io import write_json
from wildtrain.params import Params


def evaluate(p: Params, root: Path, family: str = "detector") -> dict:
    fam = families.get(family)
    device = getattr(p, fam.evaluate_section).device
    predictor = fam.load(fam.model_dir(p, root), device)
    metrics = fam.evaluate(predictor, p, root, write_outputs=True)
    write_json(root / p.paths.metrics / f"eval{fam.suffix}.json", metrics)
    keys = ("map50_95", "map50", "accuracy", "f1_macro", "miou", "dice_macro")
    headline = ", ".join(f"{k} {metrics[k]:.4f}" for k in keys if metrics.get(k) is not None)
    print(f"evaluate: {fam.name} on {metrics['split']}: {headline}")
    return metrics
