"""Stage `train_classifier`: the species classifier on the ROI crops, tracked in MLflow + dvclive.

`classifier.resume: auto` continues an interrupted training with the same params and crops from
`runs/classifier/last.ckpt`, in the same MLflow run; anything else starts afresh.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from wildtrain.io import atomic_path, sha256_file, write_json
from wildtrain.params import Params, as_dict, flatten
from wildtrain.pipeline.train import _reusable_run, source_tags, system_info
from wildtrain.tracking import mlflow_run
from wildtrain.tracking.lineage import dataset_hash, git_commit, hash_tree
from wildtrain.tracking.live import EpochLogger

CLASSIFIER_INFO = "classifier.json"  # what evaluate/register need: backbone, classes, imgsz, MLflow run id
WEIGHTS_FILE = "model.pt"  # a plain state dict of the backbone


def train_classifier(p: Params, root: Path) -> dict | None:
    import torch

    from wildtrain.classifier.data import MEAN, STD
    from wildtrain.classifier.datamodule import CropDataModule
    from wildtrain.classifier.trainer import build_module, fit, is_rank_zero

    c = p.classifier
    crops = root / p.paths.crops
    dm = CropDataModule(crops, c)
    module = build_module(c, dm, root)
    data_hash = dataset_hash(hash_tree(crops))
    source = source_tags(p, root)
    workdir = root / p.paths.classifier_runs
    run_file = workdir.with_name(workdir.name + ".mlflow.json")
    fingerprint = hashlib.sha256(json.dumps([as_dict(c), data_hash], sort_keys=True).encode()).hexdigest()
    previous = _reusable_run(run_file, fingerprint) if c.resume == "auto" else None
    if not is_rank_zero():  # a DDP worker: rank 0 owns tracking and outputs
        fit(c, dm, module, workdir, None, resume=previous is not None)
        return None
    if previous is None:
        shutil.rmtree(workdir, ignore_errors=True)  # checkpoints of other params or data are never resumed
    with mlflow_run.run(p.tracking.experiment, run_id=previous, run_name="train-classifier", root=root) as run:
        run_id = run.info.run_id
        write_json(run_file, {"run_id": run_id, "fingerprint": fingerprint, "complete": False})
        import mlflow

        if previous is None:
            mlflow.log_params({f"classifier.{k}": v for k, v in flatten(as_dict(c)).items()})
            mlflow.log_params({f"system.{k}": v for k, v in system_info().items()})
            mlflow.log_params({"data.dataset_hash": data_hash, **{f"data.{k}": v for k, v in dm.stats().items()},
                               **{f"data.{k}": v for k, v in source.items()}})
            mlflow.set_tags({"framework": "lightning-classifier", "dataset_hash": data_hash, **source,
                             **git_commit(root)})
        logger = EpochLogger(root / p.paths.metrics / "train_classifier", run_id, resume=previous is not None)
        try:
            result = fit(c, dm, module, workdir, logger, resume=previous is not None)
        finally:
            logger.close()
        out = root / p.paths.classifier
        with atomic_path(out / WEIGHTS_FILE) as tmp:
            torch.save(result.state_dict, tmp)
        info = {"framework": "lightning-classifier", "backbone": c.backbone, "weights": WEIGHTS_FILE,
                "sha256": sha256_file(out / WEIGHTS_FILE), "class_names": dm.classes, "imgsz": c.imgsz,
                "mean": list(MEAN), "std": list(STD), "epochs_completed": result.epochs_completed,
                "resumed_after_epochs": result.resumed_after_epochs, "best_val": result.best_score,
                "monitor": c.monitor, "mlflow_run_id": run_id, "dataset_hash": data_hash, **source}
        write_json(out / CLASSIFIER_INFO, info)
        mlflow.set_tag("model_sha256", info["sha256"])
    write_json(run_file, {"run_id": run_id, "fingerprint": fingerprint, "complete": True})
    resumed = "" if result.resumed_after_epochs is None else f" (resumed after epoch {result.resumed_after_epochs})"
    print(f"train_classifier: {result.epochs_completed} epochs{resumed}, {c.backbone} on {len(dm.classes)} classes, "
          f"model {out / WEIGHTS_FILE}, MLflow run {run_id}")
    return info
