"""Stage `register`: log lineage + artifacts to the training run, register a version, gate the aliases."""

from __future__ import annotations

import tempfile
from pathlib import Path

from wildtrain import __version__
from wildtrain.io import read_json, write_json
from wildtrain.models import get_adapter
from wildtrain.params import Params
from wildtrain.pipeline.train import TRAIN_INFO
from wildtrain.tracking import mlflow_run
from wildtrain.tracking.lineage import dvc_stage_hashes, git_commit


DETECTOR_REQUIREMENTS = ("torch==", "torchvision==", "ultralytics==", "mlflow==", "numpy==", "pycocotools==")
SOURCE_TAGS = ("data_source", "data_source_md5")  # the source folder and its DVC hash (train.json, classifier.json)
FRAMEWORK_REQUIREMENTS = {"mmdet": ("mmdet==", "mmengine==", "mmcv-lite==")}


def _requirements(root: Path, wanted: tuple[str, ...] = DETECTOR_REQUIREMENTS) -> list[str]:
    """The pinned lines of requirements.txt a served model needs."""
    req = root / "requirements.txt"
    lines = req.read_text().splitlines() if req.is_file() else []
    return [ln.strip() for ln in lines if ln.strip().startswith(wanted)]


def register(p: Params, root: Path) -> dict:
    r = p.register
    models = root / p.paths.models
    info = read_json(models / TRAIN_INFO, "training info")
    ev = read_json(root / p.paths.metrics / "eval.json", "evaluation metrics")
    metrics = {k: float(v) for k, v in ev.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    tags = {"framework": info["framework"], "dataset_hash": info["dataset_hash"], "model_sha256": info["sha256"],
            **{k: info.get(k, "none") for k in SOURCE_TAGS},
            "wildtrain_version": __version__, **git_commit(root), **dvc_stage_hashes(root)}
    mlflow_run.connect(p.tracking.experiment, root)
    checkpoint = models / info["checkpoint"]
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = [root / p.paths.metrics / "eval.json", models / TRAIN_INFO]
        artifacts += [root / p.paths.plots / name for name in ("pr_curve.png", "confusion.png")]
        if r.export_onnx:
            exported = get_adapter(info["framework"]).export(checkpoint, Path(tmp), imgsz=info["imgsz"])
            artifacts += [f for f in exported if f.suffix != ".pt"]
        from wildtrain.registry import register_model

        meta = {k: info[k] for k in ("framework", "class_names", "category_ids", "imgsz")}
        result = register_model(run_id=info["mlflow_run_id"], name=r.model_name, gate_metric=r.gate_metric,
                                metrics=metrics, tags=tags, weights=checkpoint, meta=meta, artifacts=artifacts,
                                pip_requirements=_requirements(
                                    root, DETECTOR_REQUIREMENTS + FRAMEWORK_REQUIREMENTS.get(info["framework"], ())))
    write_json(root / p.paths.metrics / "register.json", result)
    print(f"register: {result['model_name']} v{result['version']} -> {', '.join(result['aliases'])} ({result['reason']})")
    return result
