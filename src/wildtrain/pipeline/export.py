"""`wildtrain export --model MODEL --to stac|dlpk|onnx|torchscript|openvino|card --out DIR`: a model's publication, for any version.

A version registered by `register` carries its publication as artifacts of its run (`publish/v<N>/`): those exact
files are written. Any other model — a version registered before publishing existed, a model folder — is
published here the way `register` does it: exported, checked against PyTorch on this project's held-out images
(so the data must be present: `dvc pull`), described with the records that can be found for it (its run's
metrics and params, metrics/data.json when it describes the same dataset).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from wildtrain import families, publish
from wildtrain.errors import WildtrainError
from wildtrain.contract import ModelCard
from wildtrain.io import copy_file, read_json
from wildtrain.params import Params
from wildtrain.publish.release import Context, Release, release
from wildtrain.publish.release import context as publish_context


def _one_line(e: Exception) -> str:
    return " ".join(str(getattr(e, "message", None) or e).split())[:300]


def _download(run_id: str, path: str, dst: Path) -> Path | None:
    """An artifact (file or folder) of a run, or None when the run has none by that name."""
    import mlflow
    from mlflow.tracking import MlflowClient

    parent = path.rpartition("/")[0] or None
    if path not in {a.path for a in MlflowClient().list_artifacts(run_id, parent)}:
        return None
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=str(dst)))


def _run_params(run_id: str | None, prefixes: tuple[str, ...]) -> dict:
    """The training params a run logged (best effort: {} when the run cannot be read)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    if not run_id:
        return {}
    try:
        params = MlflowClient().get_run(run_id).data.params
    except MlflowException:
        return {}
    return {k: v for k, v in sorted(params.items()) if k.startswith(prefixes)}


def _context(fam, p: Params, root: Path, card: ModelCard, model_dir: Path, metrics: dict | None,
             source: str, data: dict | None) -> Context:
    base = publish_context(fam, p, root, card, model_dir, metrics, source)
    runs = [card.training.get("mlflow_run_id")] + [card.training.get(role, {}).get("mlflow_run_id")
                                                   for role in card.components]
    hyper: dict = {}
    for run_id in runs:
        hyper.update(_run_params(run_id, ("train.", "classifier.")))
    return Context(metrics=metrics, data=data if data is not None else base.data,
                   hyperparameters=hyper or base.hyperparameters, predict=base.predict, parity_nms=base.parity_nms,
                   metrics_source=source)


def _build(fam, p: Params, root: Path, model_dir: Path, context: Context, rel: Release, work: Path) -> Path:
    staged = publish.stage(fam, model_dir, work / "stage", p, root, context, rel)
    publish.finish(staged, work / "publication", rel)
    return work / "publication"


def _registered(p: Params, root: Path, spec: str, work: Path) -> Path:
    """A registered version's publication: its run's `publish/v<N>/`, else published here from its model folder."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from wildtrain.env import tracking_uri
    from wildtrain.registry import resolve

    body = spec.removeprefix("models:/")
    client = MlflowClient()
    try:
        if "@" in body:
            name, alias = body.split("@", 1)
            mv = client.get_model_version_by_alias(name, alias)
        else:
            name, _, number = body.rpartition("/")
            mv = client.get_model_version(name, number)
        logged = _download(mv.run_id, f"publish/v{mv.version}", work / "logged")
    except MlflowException as e:
        raise WildtrainError(f"--model {spec}: {_one_line(e)}") from None
    if logged is not None:
        print(f"export: {name} v{mv.version}: the publication registered with it (run {mv.run_id})")
        return logged
    model_dir = resolve(f"models:/{name}/{mv.version}", [], root / p.paths.runs / "models")
    card = ModelCard.load(model_dir)
    fam = families.get(card.family)
    found = _download(mv.run_id, f"artifacts/eval{fam.suffix}.json", work / "records")
    data_file = _download(mv.run_id, "artifacts/data.json", work / "records")
    metrics = read_json(found, "evaluation metrics") if found else None
    data = read_json(data_file, "dataset statistics") if data_file else None
    context = _context(fam, p, root, card, model_dir, metrics, f"MLflow run {mv.run_id}" if found else "", data)
    aliases = client.get_model_version(name, mv.version).aliases
    rel = release(card, name, int(mv.version), aliases=aliases, run_id=mv.run_id, tracking_uri=tracking_uri(root),
                  git={"git_commit": mv.tags.get("git_commit"), "git_dirty": mv.tags.get("git_dirty")})
    print(f"export: {name} v{mv.version} was registered without a publication: publishing it now")
    return _build(fam, p, root, model_dir, context, rel, work)


def _folder(p: Params, root: Path, folder: Path, work: Path) -> Path:
    """A model folder's publication (unregistered). The project's metrics are used when they are this model's:
    the last registration of its family came from the same training run."""
    card = ModelCard.load(folder)
    fam = families.get(card.family)
    metrics, source = None, ""
    registered = root / p.paths.metrics / f"register{fam.suffix}.json"
    evaluated = root / p.paths.metrics / f"eval{fam.suffix}.json"
    run_id = card.training.get("mlflow_run_id")
    if run_id and registered.is_file() and evaluated.is_file() and \
            read_json(registered, "registration").get("run_id") == run_id:
        metrics, source = read_json(evaluated, "evaluation metrics"), str(evaluated.relative_to(root))
    context = _context(fam, p, root, card, folder, metrics, source, None)
    rel = release(card, getattr(p, fam.register_section).model_name, None)
    return _build(fam, p, root, folder, context, rel, work)


def export(p: Params, root: Path, model: str, to: str, out: str) -> list[Path]:
    """Write the `to` files of `model`'s publication into `out`; returns them."""
    from wildtrain.tracking import mlflow_run

    if to not in publish.FORMATS:
        raise WildtrainError(f"--to: unknown format '{to}' (available: {', '.join(publish.FORMATS)})")
    mlflow_run.connect(p.tracking.experiment, root)
    with tempfile.TemporaryDirectory(prefix="wildtrain-export-") as tmp:
        if model.startswith("models:/"):
            folder = _registered(p, root, model, Path(tmp))
        else:
            if not (Path(model) / "model.json").is_file():
                raise WildtrainError(f"--model: '{model}' is neither a model folder (with model.json) nor "
                                     f"models:/NAME@ALIAS or models:/NAME/VERSION")
            folder = _folder(p, root, Path(model), Path(tmp))
        chosen = publish.select(folder, to)
        if not chosen:
            item = read_json(folder / publish.STAC_ITEM, "STAC item")
            missing = item["properties"].get("wildtrain:unavailable", {})
            why = "; ".join(v for k, v in missing.items() if k.endswith(to)) or "not exported"
            raise WildtrainError(f"--to {to}: this model has no {to} export ({why})")
        dst = Path(out)
        written = []
        for f in chosen:
            target = dst / f.relative_to(folder)
            copy_file(f, target)
            written.append(target)
    print(f"export: {len(written)} file(s) in {dst}: {', '.join(str(w.relative_to(dst)) for w in written)}")
    return written
