"""Stages `train`, `train_classifier`, `train_segmenter`: fit a model family on the canonical data, tracked in
MLflow + dvclive, and write its model folder (model.json + weights).

`resume: auto` continues an interrupted training with the same params and data from the framework's own last
checkpoint, in the same MLflow run (tracking.resume); anything else starts afresh.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
from pathlib import Path

from wildtrain import env, families
from wildtrain.data.coco import load_coco
from wildtrain.errors import WildtrainError
from wildtrain.contract import EpochCallback, ModelCard, TrainData
from wildtrain.io import copy_file, read_json, replaced_dir, sha256_file
from wildtrain.layout import CROPS_INFO, MANIFEST, REBALANCE_PLAN, SPLITS, YOLO_DATASET, image_root
from wildtrain.params import Params, as_dict, flatten
from wildtrain.tracking import mlflow_run, resume
from wildtrain.tracking.lineage import git_commit
from wildtrain.tracking.live import EpochLogger, progress_line


def train_data(p: Params, root: Path) -> TrainData:
    """What convert made (a family reads the part it trains on; a classifier may be given crops alone)."""
    coco = {s: root / p.paths.coco / f"{s}.json" for s in SPLITS}
    manifest_file = root / p.paths.raw / MANIFEST
    manifest = read_json(manifest_file, "dataset manifest") if manifest_file.is_file() else {}
    ds = load_coco(coco["train"]) if coco["train"].is_file() else None
    tiling = ds.info.get("tiling") if ds else None
    sides = [max(im["width"], im["height"]) for im in ds.images] if ds else []
    return TrainData(root=root, coco=coco, image_root=image_root(coco["train"], ds.info if ds else {}),
                     yolo_yaml=root / p.paths.yolo / YOLO_DATASET, crops=root / p.paths.crops,
                     class_names=ds.class_names if ds else [], category_ids=ds.category_ids if ds else [],
                     dataset_hash=manifest.get("dataset_hash", "unknown"),
                     source=str(manifest.get("data_source") or "unknown"),
                     source_md5=manifest.get("data_source_md5") or "none", tiling=tiling,
                     image_size=int(tiling["size"]) if tiling else int(statistics.median(sides)) if sides else 0,
                     crops_plan=root / p.paths.rebalance / REBALANCE_PLAN, stream=p.data.stream,
                     stream_buffer=p.data.stream_buffer)


def inputs_hash(p: Params, root: Path) -> str:
    """What convert made of the data (split files, crops): a training resumes only on the same. Names and sizes
    of the crops (a stat each), the split files' bytes."""
    files = [root / p.paths.coco / f"{s}.json" for s in SPLITS] + [root / p.paths.rebalance / REBALANCE_PLAN]
    parts = [sha256_file(f) if f.is_file() else None for f in files]
    crops = root / p.paths.crops
    parts += sorted(f"{f.relative_to(crops)}:{f.stat().st_size}" for f in crops.rglob("*") if f.is_file()) \
        if crops.is_dir() else []
    return resume.fingerprint(parts)


def is_rank_zero() -> bool:
    """False in the extra processes of a distributed training (Lightning's DDP launcher sets LOCAL_RANK/NODE_RANK,
    torchrun RANK, SLURM SLURM_PROCID): rank 0 alone tracks and writes outputs."""
    return all(os.environ.get(k, "0") in ("", "0") for k in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"))


def system_info() -> dict:
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
            "cuda": torch.version.cuda or "none", "gpus": torch.cuda.device_count()}


def train(p: Params, root: Path, family: str = "detector", *, on_epoch: EpochCallback | None = None,
          run_tags: dict[str, str] | None = None) -> dict | None:
    """`on_epoch` is called after each epoch is logged (tune reports to Optuna there and may raise to stop);
    `run_tags` go on the MLflow run (tune nests trials under the study's run)."""
    fam = families.get(family)
    if fam.train_section is None:
        raise WildtrainError(f"{family}: nothing to train")
    cfg = getattr(p, fam.train_section)
    data = train_data(p, root)
    workdir = root / p.paths.runs / fam.name
    digest = resume.fingerprint(fam.name, as_dict(cfg), data.dataset_hash, inputs_hash(p, root))
    if not is_rank_zero():  # an extra process of distributed training: rank 0 owns tracking and outputs
        # On rank 0's machine this reads what rank 0 just decided; on another machine (num_nodes), a folder that
        # rank 0 never recorded (or one of other params, or finished) does not resume from a stale checkpoint.
        fam.train(cfg, data, workdir, resume=resume.resumable(workdir, digest, cfg.resume), on_epoch=None)
        return None
    start = resume.begin(workdir, digest, cfg.resume)
    with mlflow_run.run(p.tracking.experiment, run_id=start.run_id, run_name=f"train-{fam.name}", root=root,
                        tags=run_tags) as run:
        run_id = run.info.run_id
        resume.attach(workdir, run_id)
        import mlflow

        lineage = {"family": fam.name, "dataset_hash": data.dataset_hash, "data_source": data.source,
                   "data_source_md5": data.source_md5, **git_commit(root)}
        if start.run_id is None:
            mlflow.log_params({f"{fam.train_section}.{k}": v for k, v in flatten(as_dict(cfg)).items()})
            mlflow.log_params({f"system.{k}": v for k, v in system_info().items()})
            mlflow.log_params({"data.dataset_hash": data.dataset_hash, "data.classes": ",".join(data.class_names),
                               "data.data_source": data.source, "data.data_source_md5": data.source_md5})
            mlflow.set_tags(lineage)
        logger = EpochLogger(root / p.paths.metrics / f"train{fam.suffix}", run_id, resume=start.resume)
        epochs = getattr(cfg, "epochs", 0)
        # a training in phases numbers its epochs on across phases (each phase's epochs: its own or train's)
        phases = [ph.epochs or epochs for ph in getattr(cfg, "phases", None) or ()] or None
        epochs = sum(phases) if phases else epochs

        def log_epoch(epoch: int, metrics: dict) -> None:
            logger.log_epoch(epoch, metrics)
            print(progress_line(epoch, epochs, metrics, phases), flush=True)
            if on_epoch is not None:
                on_epoch(epoch, metrics)

        try:
            trained = fam.train(cfg, data, workdir, resume=start.resume, on_epoch=log_epoch)
        except BaseException:
            logger.close(check=False)
            raise
        logger.close()
        if trained.extra.get("dataset_stats"):  # what the family measured of its data (mean/std, class frequencies)
            mlflow.log_params({f"data.{k}": v for k, v in flatten(trained.extra["dataset_stats"]).items()})
        repro = env.reproducibility(getattr(cfg, "device", "cpu"))
        mlflow.set_tags(repro)
        model_dir = fam.model_dir(p, root)
        with replaced_dir(model_dir) as tmp:
            for name, src in trained.files.items():
                copy_file(src, tmp / name)
            card = ModelCard(family=fam.name, task=fam.task, framework=trained.framework,
                             architecture=trained.architecture, class_names=trained.class_names or data.class_names,
                             weights=trained.weights,
                             input=trained.input,
                             training={"epochs_completed": trained.epochs_completed, "resumed": trained.resumed,
                                       "mlflow_run_id": run_id, **lineage, **repro},
                             hashes={"weights_sha256": sha256_file(tmp / trained.weights),
                                     "tensors_sha256": trained.tensors_sha256},
                             extra=trained.extra)
            card.save(tmp)
        mlflow.set_tags({"model_sha256": card.hashes["weights_sha256"], "tensors_sha256": trained.tensors_sha256})
    resume.finish(workdir)
    again = " (resumed)" if trained.resumed else ""
    print(f"train: {fam.name} {trained.architecture}, {trained.epochs_completed} epochs{again}, model {model_dir}, "
          f"tensors {trained.tensors_sha256[:12]}, MLflow run {run_id}")
    return dataclasses.asdict(card)
