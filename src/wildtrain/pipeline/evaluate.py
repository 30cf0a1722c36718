"""Stages `evaluate`, `evaluate_classifier`, `evaluate_two_stage`, `evaluate_segmenter`: the pipeline's model of a
family, loaded
through the family interface and scored on the held-out split by the family's one evaluator."""

from __future__ import annotations

from pathlib import Path

from wildtrain import families
from wildtrain.evaluate import bootstrap
from wildtrain.io import write_json
from wildtrain.layout import tables_file
from wildtrain.params import Params


def evaluate(p: Params, root: Path, family: str = "detector") -> dict:
    """metrics/eval{suffix}.json, and the per-unit table beside the predictions (the register gate's paired test
    reads it, and logs it with the registered version)."""
    fam = families.get(family)
    device = getattr(p, fam.evaluate_section).device
    predictor = fam.load(fam.model_dir(p, root), device)
    metrics, table = fam.evaluate(predictor, p, root, write_outputs=True)
    bootstrap.save(root / tables_file(p.paths, fam.suffix, metrics["split"]), table,
                   {"evaluation_hash": metrics["evaluation_hash"], "family": fam.name})
    write_json(root / p.paths.metrics / f"eval{fam.suffix}.json", metrics)
    print(f"evaluate: {fam.name} on {metrics['split']}: {headline(metrics)}")
    return metrics


def headline(metrics: dict) -> str:
    """`map50 0.6425 [0.5901, 0.6934]`, ... for the headline metrics there are."""
    def one(k: str) -> str:
        ci = metrics.get(k + bootstrap.CI_SUFFIX)
        return f"{k} {metrics[k]:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")

    return ", ".join(one(k) for k in bootstrap.HEADLINE if metrics.get(k) is not None)
