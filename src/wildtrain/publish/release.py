"""Where a published model comes from — its registered version, MLflow run, code and data — and what the documents
describing it are made of (`Context`), gathered by the caller so the writers need no MLflow, DVC or params."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from wildtrain.contract import ModelCard


@dataclass(frozen=True)
class Release:
    """A model as published: `version` None when it was never registered (a folder exported by hand)."""

    model_name: str
    version: int | None
    aliases: tuple[str, ...] = ()
    run_id: str | None = None
    tracking_uri: str | None = None
    git_commit: str = "unknown"
    git_dirty: str = "unknown"
    git_remote: str | None = None
    dataset_hash: str = ""
    data_source: str = "unknown"
    data_source_md5: str = "none"
    created: str = ""  # ISO 8601 UTC

    @property
    def model_uri(self) -> str | None:
        return None if self.version is None else f"models:/{self.model_name}/{self.version}"

    @property
    def label(self) -> str:
        return f"{self.model_name} v{self.version}" if self.version is not None else f"{self.model_name} (unregistered)"

    @property
    def item_id(self) -> str:
        return f"{self.model_name}-v{self.version}" if self.version is not None else f"{self.model_name}-unregistered"


def release(card: ModelCard, model_name: str, version: int | None, *, aliases=(), run_id: str | None = None,
            tracking_uri: str | None = None, git: dict | None = None, git_remote: str | None = None) -> Release:
    """A Release from the model card's lineage (data, commit), and the registration's own facts."""
    t = card.training
    git = git or {}
    return Release(model_name=model_name, version=version, aliases=tuple(sorted(aliases)),
                   run_id=run_id or t.get("mlflow_run_id"), tracking_uri=tracking_uri,
                   git_commit=str(git.get("git_commit") or t.get("git_commit") or "unknown"),
                   git_dirty=str(git.get("git_dirty") or t.get("git_dirty") or "unknown"), git_remote=git_remote,
                   dataset_hash=str(t.get("dataset_hash", "")), data_source=str(t.get("data_source", "unknown")),
                   data_source_md5=str(t.get("data_source_md5", "none")),
                   created=dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"))


@dataclass(frozen=True)
class Context:
    """What the model card and the STAC item say beyond the model folder: evaluation metrics (metrics/eval*.json),
    dataset statistics (metrics/data.json, when it describes the data this model was trained on), the training
    hyperparameters, and the thresholds predict and the parity check use."""

    metrics: dict | None = None
    data: dict | None = None
    hyperparameters: dict = field(default_factory=dict)
    predict: dict = field(default_factory=lambda: {"conf": 0.25, "iou": 0.7, "max_det": 300})
    parity_nms: dict = field(default_factory=lambda: {"conf": 0.001, "iou": 0.7, "max_det": 100})
    metrics_source: str = ""  # where the metrics come from (a file, an MLflow artifact)


def git_remote(root: Path) -> str | None:
    """The origin remote's URL, so the STAC item can link the commit where it can be browsed (None: no remote)."""
    import subprocess

    try:
        out = subprocess.run(["git", "remote", "get-url", "origin"], cwd=root, capture_output=True, text=True,
                             timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def pretrained_source(hyperparameters: dict) -> str | None:
    """Weights training started from (None: from scratch), from the training params that name them."""
    model = str(hyperparameters.get("train.model", ""))
    if model.endswith(".pt"):
        return model
    for key in ("train.mmdet.weights", "classifier.weights"):
        if hyperparameters.get(key):
            return str(hyperparameters[key])
    if hyperparameters.get("classifier.pretrained") in (True, "True", "true"):
        return "ImageNet (torchvision weights)"
    return None


def hyperparameters(fam, p, card: ModelCard, model_dir: Path) -> dict:
    """The training params of the model (both parts' for a two-stage model), as its MLflow run logged them."""
    from wildtrain.params import as_dict, flatten

    sections = [fam.train_section] if fam.train_section else ["train", "classifier"]
    frameworks = {card.framework} | {ModelCard.load(model_dir / sub).framework for sub in card.components.values()}
    out = {}
    for section in sections:
        out.update({f"{section}.{k}": v for k, v in flatten(as_dict(getattr(p, section))).items()})
    return {k: v for k, v in out.items() if "mmdet" in frameworks or not k.startswith("train.mmdet.")}


def context(fam, p, root: Path, card: ModelCard, model_dir: Path, metrics: dict | None,
            metrics_source: str) -> Context:
    """The pipeline's Context for a model: metrics/data.json only when it describes this model's training data (same
    dataset hash), predict's thresholds, and the evaluation's for the parity check's NMS."""
    from wildtrain.io import read_json

    data_file = root / p.paths.metrics / "data.json"
    data = read_json(data_file, "dataset statistics") if data_file.is_file() else None
    if data and data.get("dataset_hash") != card.training.get("dataset_hash"):
        data = None
    pr, ev = p.predict, p.evaluate
    return Context(metrics=metrics, data=data, hyperparameters=hyperparameters(fam, p, card, model_dir),
                   predict={"conf": pr.conf, "iou": pr.iou, "max_det": pr.max_det, "batch": pr.batch},
                   parity_nms={"conf": ev.conf, "iou": ev.iou, "max_det": ev.max_det}, metrics_source=metrics_source)
