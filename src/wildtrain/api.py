"""The Python API: the CLI's common operations as functions, for notebooks and scripts (docs/how-to/python-api.md).

Thin on purpose: each function calls what the CLI command calls (registry.resolve_model, the families' load and
predict, the pipeline stages, the tuner), so a script and the CLI behave the same. Errors are raised as
WildtrainError with the CLI's one-line message, never printed or turned into an exit."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from wildtrain import env
from wildtrain.errors import WildtrainError

__all__ = ["WildtrainError", "evaluate", "load", "predict", "register", "train", "tune"]


def load(model: str | os.PathLike, device: str = "auto", tracking_uri: str | None = None):
    """A trained model, ready to predict: a model folder (with model.json) or a registered version,
    `models:/NAME@ALIAS` or `models:/NAME/VERSION` (from `tracking_uri`, else MLFLOW_TRACKING_URI, else the
    project's mlflow.db; downloaded once). Returns the family's Predictor: `.predict(images, **options)`, `.card`."""
    from wildtrain import families
    from wildtrain.params import Params
    from wildtrain.pipeline.predict import model_cache
    from wildtrain.registry import resolve_model

    root = env.configure()
    uri = tracking_uri or env.tracking_uri(root)
    ref = resolve_model(str(model), [], model_cache(Params(), root, uri), uri)
    return families.load(ref.folder, device)


def predict(model, images, **options) -> list:
    """The model's predictions on HxWx3 uint8 RGB arrays (a list of them, or one): a list with one Detections,
    Classification or Segmentation per image (wildtrain.contract). `model`: a loaded model, or anything
    `load` takes. `options`: the family's predict options (conf, iou, max_det, slice, overlap, merge_ios, batch,
    precision), checked as `wildtrain predict` checks them; the defaults are params.py's `predict` section."""
    import numpy as np

    from wildtrain.params import Params
    from wildtrain.pipeline.predict import check_values, family_options

    if "device" in options:
        raise WildtrainError("device: give it to load(model, device=...), where the weights are placed")
    batch = [images] if isinstance(images, np.ndarray) and images.ndim == 3 else list(images)
    for i, image in enumerate(batch):
        if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8):
            got = f"shape {image.shape}, dtype {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
            raise WildtrainError(f"images[{i}]: expected an HxWx3 uint8 RGB array, got {got}")
    predictor = model if hasattr(model, "predict") and hasattr(model, "card") else load(model)
    defaults = {k: v for k, v in Params().predict.__dict__.items() if k != "device"}
    return predictor.predict(batch, **family_options(predictor, defaults, check_values(options), draw=False))


@contextmanager
def _project(root: str | os.PathLike | None, params) -> Iterator[tuple]:
    """(params, root) of a project, with the process inside it while a stage runs (MLflow's sqlite store puts
    artifacts under the current folder's mlruns/, as `dvc repro` does from the root)."""
    from wildtrain import params as params_mod

    start = Path(root) if root is not None else Path.cwd()
    found = env.find_project(start)
    if found is None:
        raise WildtrainError(f"{start}: not inside a wildtrain project (no dvc.yaml here or above)")
    env.configure(found)
    p = params if isinstance(params, params_mod.Params) else params_mod.load(Path(params or found / "params.yaml"))
    before = Path.cwd()
    os.chdir(found)
    try:
        yield p, found
    finally:
        os.chdir(before)


def train(family: str = "detector", root: str | os.PathLike | None = None, params=None) -> dict | None:
    """Train a family's model as `wildtrain train FAMILY` does (resumes an interrupted training). `root`: the
    project (default: the current folder or the nearest above holding dvc.yaml); `params`: a Params or a params
    file (default: the project's params.yaml)."""
    from wildtrain.pipeline.train import train as stage

    with _project(root, params) as (p, found):
        return stage(p, found, family)


def evaluate(family: str = "detector", root: str | os.PathLike | None = None, params=None) -> dict:
    """Score the project's model of a family on the held-out split, as `wildtrain evaluate FAMILY`: its metrics
    (also written to metrics/eval*.json), with their 95% intervals."""
    from wildtrain.pipeline.evaluate import evaluate as stage

    with _project(root, params) as (p, found):
        return stage(p, found, family)


def register(family: str = "detector", root: str | os.PathLike | None = None, params=None) -> dict:
    """Register the evaluated model of a family in MLflow and apply the alias gate, as `wildtrain register FAMILY`:
    the version, its aliases, the gate's decision and reason."""
    from wildtrain.pipeline.register import register as stage

    with _project(root, params) as (p, found):
        return stage(p, found, family)


def tune(root: str | os.PathLike | None = None, params=None, workers: int = 1, apply: bool = False) -> dict:
    """Optuna search over params.yaml `tune.space` with the real train and evaluate stages, as `wildtrain tune`
    (resumable): the study's summary (best trial, its params and value)."""
    from wildtrain import tune as sweep

    if workers < 1:
        raise WildtrainError(f"workers: {workers}: must be >= 1")
    with _project(root, params) as (p, found):
        return sweep.launch(p, found, workers=workers, apply=apply)
