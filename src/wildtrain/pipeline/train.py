"""Stage `train`: fit the configured framework on the canonical dataset, tracked in MLflow + dvclive."""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

from wildtrain.data.coco import load_coco
from wildtrain.data.split import SPLITS
from wildtrain.io import copy_file, read_json, sha256_file, write_json
from wildtrain.models import get_adapter
from wildtrain.models.base import EpochCallback, TrainData
from wildtrain.params import Params, as_dict, flatten
from wildtrain.pipeline.convert import image_root
from wildtrain.pipeline.prepare import MANIFEST
from wildtrain.tracking import mlflow_run
from wildtrain.tracking.lineage import git_commit
from wildtrain.tracking.live import EpochLogger, progress_line

TRAIN_INFO = "train.json"  # what later stages need: framework, classes, image size, MLflow run id
MODEL_FILE = "model.pt"


def train_data(p: Params, root: Path) -> TrainData:
    coco = {s: root / p.paths.coco / f"{s}.json" for s in SPLITS}
    ds = load_coco(coco["train"])
    return TrainData(coco=coco, image_root=image_root(coco["train"], ds), yolo_yaml=root / p.paths.yolo / "dataset.yaml",
                     class_names=ds.class_names,
                     dataset_hash=read_json(root / p.paths.raw / MANIFEST, "dataset manifest")["dataset_hash"])


def source_tags(p: Params, root: Path) -> dict[str, str]:
    """The data source and its DVC hash from prepare's manifest, as MLflow tag values ('none': not versioned;
    'unknown' without a manifest, e.g. a classifier trained on crops made outside the pipeline)."""
    manifest = root / p.paths.raw / MANIFEST
    m = read_json(manifest, "dataset manifest") if manifest.is_file() else {}
    return {"data_source": str(m.get("data_source") or "unknown"), "data_source_md5": m.get("data_source_md5") or "none"}


def _reusable_run(run_file: Path, fingerprint: str) -> str | None:
    """The MLflow run of an interrupted training with the same params and data, to continue it."""
    if not run_file.is_file():
        return None
    saved = read_json(run_file)
    return saved["run_id"] if saved.get("fingerprint") == fingerprint and not saved.get("complete") else None


def system_info() -> dict:
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
            "cuda": torch.version.cuda or "none", "gpus": torch.cuda.device_count()}


def train(p: Params, root: Path, *, on_epoch: EpochCallback | None = None,
          run_tags: dict[str, str] | None = None) -> dict:
    """`on_epoch` is called after each epoch is logged (tune reports to Optuna there and may raise to stop);
    `run_tags` go on the MLflow run (tune nests trials under the study's run)."""
    t = p.train
    adapter = get_adapter(t.framework)
    data = train_data(p, root)
    source = source_tags(p, root)
    runs_dir = root / p.paths.runs
    workdir = runs_dir / t.framework
    train_params = as_dict(t)
    fingerprint = hashlib.sha256(json.dumps([train_params, data.dataset_hash], sort_keys=True).encode()).hexdigest()
    run_file = runs_dir / f"{t.framework}.mlflow.json"
    previous = _reusable_run(run_file, fingerprint) if t.resume == "auto" else None
    with mlflow_run.run(p.tracking.experiment, run_id=previous, run_name=f"train-{t.framework}", root=root,
                        tags=run_tags) as run:
        run_id = run.info.run_id
        write_json(run_file, {"run_id": run_id, "fingerprint": fingerprint, "complete": False})
        import mlflow

        if previous is None:
            mlflow.log_params({f"train.{k}": v for k, v in flatten(train_params).items()})
            mlflow.log_params({f"system.{k}": v for k, v in system_info().items()})
            mlflow.log_params({"data.dataset_hash": data.dataset_hash, "data.classes": ",".join(data.class_names),
                               **{f"data.{k}": v for k, v in source.items()}})
            mlflow.set_tags({"framework": t.framework, "dataset_hash": data.dataset_hash, **source, **git_commit(root)})
        logger = EpochLogger(root / p.paths.metrics / "train", run_id, resume=previous is not None)

        def log_epoch(epoch: int, metrics: dict) -> None:
            logger.log_epoch(epoch, metrics)
            print(progress_line(epoch, t.epochs, metrics), flush=True)
            if on_epoch is not None:
                on_epoch(epoch, metrics)

        try:
            result = adapter.train(t, data, workdir, log_epoch)
        finally:
            logger.close()
        models = root / p.paths.models
        copy_file(result.checkpoint, models / MODEL_FILE)
        info = {"framework": t.framework, "checkpoint": MODEL_FILE, "sha256": sha256_file(models / MODEL_FILE),
                "class_names": data.class_names, "category_ids": load_coco(data.coco["train"]).category_ids,
                "imgsz": t.imgsz, "epochs_completed": result.epochs_completed, "resumed": result.resumed,
                "mlflow_run_id": run_id, "dataset_hash": data.dataset_hash, **source, **result.extra}
        write_json(models / TRAIN_INFO, info)
        mlflow.set_tag("model_sha256", info["sha256"])
    write_json(run_file, {"run_id": run_id, "fingerprint": fingerprint, "complete": True})
    print(f"train: {result.epochs_completed} epochs, model {models / MODEL_FILE}, MLflow run {run_id}")
    return info
