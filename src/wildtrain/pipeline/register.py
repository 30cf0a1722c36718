"""Stages `register`, `register_classifier`, `register_two_stage`, `register_segmenter`: export and log the
pipeline's model of a family with its lineage, register a version, and gate the aliases on the same test set
(wildtrain.registry); then publish it (wildtrain.publish): parity-checked exports, a STAC-MLM item, an Esri .dlpk
and a model card in `publish/<family>/`, also logged to the version's run as `publish/v<N>/`. An export that fails
parity stops the stage before anything is registered."""

from __future__ import annotations

import tempfile
from pathlib import Path

from wildtrain import __version__, families, publish
from wildtrain.env import tracking_uri
from wildtrain.errors import WildtrainError
from wildtrain.contract import ModelCard
from wildtrain.evaluate.bootstrap import CI_SUFFIX
from wildtrain.io import read_json, write_json
from wildtrain.layout import tables_file
from wildtrain.params import Params
from wildtrain.publish.release import context as publish_context
from wildtrain.publish.release import git_remote, release
from wildtrain.tracking import mlflow_run
from wildtrain.tracking.lineage import dvc_stage_hashes, git_commit

SERVING = ("mlflow==", "numpy==", "pandas==", "pillow==", "orjson==", "PyYAML==", "torch==", "torchvision==")
FRAMEWORK_REQUIREMENTS = {"yolo": ("ultralytics==", "opencv-python=="),
                          "mmdet": ("mmdet==", "mmengine==", "mmcv-lite==", "opencv-python=="),
                          "lightning": ("albumentations==", "opencv-python-headless==")}


def requirements(root: Path, family, card: ModelCard, model_dir: Path) -> list[str]:
    """The pinned lines of requirements.txt the served model imports (each part's framework, for a two-stage model;
    and the family's own packages)."""
    frameworks = {card.framework} | {ModelCard.load(model_dir / sub).framework for sub in card.components.values()}
    wanted = SERVING + tuple(x for f in sorted(frameworks) for x in FRAMEWORK_REQUIREMENTS.get(f, ())) \
        + family.requirements
    req = root / "requirements.txt"
    lines = req.read_text().splitlines() if req.is_file() else []
    return sorted({ln.strip() for ln in lines if ln.strip().startswith(wanted)})


def signature(predictor, p: Params):
    """Input: image bytes or a path per row; params: the family's predict options, defaulting to `predict` in
    params.yaml where it names them."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    configured = {k: getattr(p.predict, k) for k in predictor.options() if hasattr(p.predict, k)}
    specs = []
    for name, default in {**predictor.options(), **configured}.items():
        kind = "boolean" if isinstance(default, bool) else "long" if isinstance(default, int) else \
            "double" if isinstance(default, float) else "string"
        specs.append(ParamSpec(name, kind, str(default) if kind == "string" else default))
    inputs = Schema([ColSpec("binary", "image", required=False), ColSpec("string", "image_path", required=False)])
    return ModelSignature(inputs=inputs, params=ParamSchema(specs))


def log_publication(run_id: str, folder: Path, version: int) -> None:
    """The publication folder as artifacts of the version's run (`publish/v<N>/`: a run may register again)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        MlflowClient().log_artifacts(run_id, str(folder), artifact_path=f"publish/v{version}")
    except MlflowException as e:
        raise WildtrainError(f"MLflow: logging {folder} to run {run_id} failed ({' '.join(str(e).split())[:200]}); "
                             f"version {version} is registered without it: rerun the stage") from None


def logged_metrics(ev: dict) -> dict[str, float]:
    """What MLflow gets of an evaluation: its numeric top-level metrics, and each `<metric>_ci95` interval as
    `<metric>_ci95_low` / `_high` beside the metric."""
    out = {k: float(v) for k, v in ev.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for k, v in ev.items():
        if k.endswith(CI_SUFFIX) and isinstance(v, list) and len(v) == 2:
            out[f"{k}_low"], out[f"{k}_high"] = float(v[0]), float(v[1])
    return out


def register(p: Params, root: Path, family: str = "detector") -> dict:
    fam = families.get(family)
    r = getattr(p, fam.register_section)
    model_dir = fam.model_dir(p, root)
    card = ModelCard.load(model_dir)
    ev = read_json(root / p.paths.metrics / f"eval{fam.suffix}.json", "evaluation metrics")
    metrics = logged_metrics(ev)
    training = card.training
    git = git_commit(root)
    tags = {"family": fam.name, "framework": card.framework, "architecture": card.architecture,
            "dataset_hash": str(training.get("dataset_hash", "")),
            "data_source": str(training.get("data_source", "unknown")),
            "data_source_md5": str(training.get("data_source_md5", "none")),
            "model_sha256": str(card.hashes.get("weights_sha256", "")),
            "tensors_sha256": str(card.hashes.get("tensors_sha256", "")), "wildtrain_version": __version__,
            **git, **dvc_stage_hashes(root), **fam.lineage(p, root)}
    device = getattr(p, fam.evaluate_section).device
    predictor = fam.load(model_dir, device)

    def reevaluate(folder: Path) -> tuple[float, object]:
        other, table = fam.evaluate(fam.load(folder, device), p, root, write_outputs=False)
        if other["evaluation_hash"] != ev["evaluation_hash"]:
            raise WildtrainError("its re-evaluation is not comparable (the evaluator differs)")
        return float(other[r.gate_metric]), table

    from wildtrain.registry import Bootstrap, register_model

    b = getattr(p, fam.evaluate_section).bootstrap
    table_file = root / tables_file(p.paths, fam.suffix, ev["split"])
    if not table_file.is_file():
        raise WildtrainError(f"{table_file}: not found; the gate compares per-image tables the evaluate stage writes "
                             f"(dvc repro evaluate{fam.suffix})")

    context = publish_context(fam, p, root, card, model_dir, ev, f"metrics/eval{fam.suffix}.json")
    with tempfile.TemporaryDirectory(prefix="wildtrain-publish-") as tmp:
        # exports checked against PyTorch and every document drafted before the registry is touched: a failing
        # export stops here, with nothing registered
        draft = release(card, r.model_name, None, git=git)
        staged = publish.stage(fam, model_dir, Path(tmp), p, root, context, draft, export=getattr(r, "export", True))
        mlflow_run.connect(p.tracking.experiment, root)
        run_id = training.get("mlflow_run_id")
        if not run_id:  # a composed model (two_stage) has no training run of its own
            with mlflow_run.run(p.tracking.experiment, run_name=f"register-{fam.name}", root=root) as run:
                run_id = run.info.run_id
        plots = [root / p.paths.plots / name for name in fam.plot_files]
        artifacts = [root / p.paths.metrics / f"eval{fam.suffix}.json", *[f for f in plots if f.is_file()]]
        if context.data:
            artifacts.append(root / p.paths.metrics / "data.json")
        result = register_model(run_id=run_id, name=r.model_name, gate_metric=r.gate_metric, metrics=metrics,
                                evaluation=ev["evaluation_hash"], tags=tags, model_dir=model_dir, artifacts=artifacts,
                                pip_requirements=requirements(root, fam, card, model_dir), table_file=table_file,
                                table_type=fam.table_type(),
                                settings=Bootstrap(b.resamples, b.seed, r.gate_margin),
                                signature=signature(predictor, p), reevaluate=reevaluate)
        final = release(card, r.model_name, result["version"], aliases=result["aliases"], run_id=run_id,
                        tracking_uri=tracking_uri(root), git=git, git_remote=git_remote(root))
        out = root / p.paths.publish / fam.name
        files = publish.finish(staged, out, final)
    log_publication(run_id, out, result["version"])
    result["exports"] = sorted(k for k in files if k.endswith(("onnx", "torchscript", "openvino")))
    result["publish"] = {k: str(f.relative_to(root)) for k, f in sorted(files.items())}
    result["parity"] = publish.parity.summary(staged.parity)
    write_json(root / p.paths.metrics / f"register{fam.suffix}.json", result)
    print(f"register: {result['model_name']} v{result['version']} -> {', '.join(result['aliases'])} "
          f"({result['reason']})")
    print(f"publish: {out.relative_to(root)}/ ({', '.join(sorted(files))}); parity: "
          f"{'; '.join(result['parity']) or 'no exports'}")
    return result
