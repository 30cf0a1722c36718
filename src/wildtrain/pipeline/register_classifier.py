"""Stage `register_classifier`: export ONNX + TorchScript (parity-checked), then the same registry and
alias gate as the detector (wildtrain.registry), with a signature and an input example."""

from __future__ import annotations

import tempfile
from pathlib import Path

from wildtrain import __version__
from wildtrain.errors import WildtrainError
from wildtrain.io import read_json, write_json
from wildtrain.params import Params
from wildtrain.pipeline.evaluate_classifier import CONFUSION, EVAL_FILE, MISCLASSIFIED
from wildtrain.pipeline.register import SOURCE_TAGS, _requirements
from wildtrain.pipeline.train_classifier import CLASSIFIER_INFO
from wildtrain.tracking import mlflow_run
from wildtrain.tracking.lineage import dvc_stage_hashes, git_commit

PYFUNC_CODE = Path(__file__).parents[1] / "classifier" / "pyfunc_model.py"
PYFUNC_REQUIREMENTS = ("onnxruntime==", "numpy==", "mlflow==")
PARITY_CROPS = 8  # held-out crops the exports are compared on


def sample_batch(files: list[Path], imgsz: int):
    """Real crops, preprocessed exactly as in evaluation: the parity batch and the input example."""
    import torch

    from wildtrain.classifier.data import load_rgb, transforms

    t = transforms(imgsz)
    return torch.stack([t(image=load_rgb(f))["image"] for f in files])


def register_classifier(p: Params, root: Path) -> dict:
    import torch
    from mlflow.models import infer_signature

    from wildtrain.classifier.data import scan_split
    from wildtrain.classifier.export import PARITY_TOLERANCE, export, parity
    from wildtrain.classifier.inference import load_model
    from wildtrain.registry import register_model

    r = p.classifier_register
    model_dir = root / p.paths.classifier
    info = read_json(model_dir / CLASSIFIER_INFO, "classifier info")
    ev = read_json(root / p.paths.metrics / EVAL_FILE, "classifier evaluation metrics")
    metrics = {k: float(v) for k, v in ev.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    tags = {"framework": info["framework"], "backbone": info["backbone"], "dataset_hash": info["dataset_hash"],
            "model_sha256": info["sha256"], **{k: info.get(k, "none") for k in SOURCE_TAGS},
            "wildtrain_version": __version__, **git_commit(root),
            **dvc_stage_hashes(root)}
    model = load_model(info, model_dir)
    crops = scan_split(root / p.paths.crops / ev["split"], info["class_names"], require_all=False, check_images=False)
    batch = sample_batch(crops.files[:PARITY_CROPS], info["imgsz"])
    mlflow_run.connect(p.tracking.experiment, root)
    with tempfile.TemporaryDirectory() as tmp:
        exported = export(model, info["imgsz"], Path(tmp))
        diffs = parity(model, exported, batch)
        worst = max(diffs, key=diffs.get)
        if diffs[worst] > PARITY_TOLERANCE:
            raise WildtrainError(f"{exported[worst].name}: export differs from the PyTorch model by "
                                 f"{diffs[worst]:.2e} (> {PARITY_TOLERANCE:g}); not registered")
        example = batch[:1].numpy()
        with torch.no_grad():
            signature = infer_signature(example, torch.softmax(model(batch[:1]), 1).numpy())
        plots = root / p.paths.plots
        artifacts = [root / p.paths.metrics / EVAL_FILE, model_dir / CLASSIFIER_INFO, plots / f"{CONFUSION}.png",
                     plots / MISCLASSIFIED, exported["torchscript"], exported["onnx"]]
        meta = {k: info[k] for k in ("framework", "backbone", "class_names", "imgsz", "mean", "std")}
        result = register_model(run_id=info["mlflow_run_id"], name=r.model_name, gate_metric=r.gate_metric,
                                metrics=metrics, tags=tags, weights=exported["onnx"], meta=meta, artifacts=artifacts,
                                pip_requirements=_requirements(root, PYFUNC_REQUIREMENTS), python_model=PYFUNC_CODE,
                                signature=signature, input_example=example)
    result["export_parity_max_abs_diff"] = diffs
    write_json(root / p.paths.metrics / "register_classifier.json", result)
    print(f"register_classifier: {result['model_name']} v{result['version']} -> {', '.join(result['aliases'])} "
          f"({result['reason']}); export parity onnx {diffs['onnx']:.1e}, torchscript {diffs['torchscript']:.1e}")
    return result
