"""The MLflow model registry: log a model folder as a pyfunc with its lineage, register a version, gate aliases.

Every new version gets the alias `challenger`; it also becomes `champion` only if its gate metric is at least
the current champion's *on the same test set with the same evaluator* (the `evaluation_hash` of both). When the
champion was scored on something else, it is re-evaluated on the current split first (the caller's
`reevaluate`); where that is impossible, the new version is not promoted and the reason says why. Only "no
such model" or "no champion alias" means there is no champion: any other registry error stops with one line
before an alias changes. Aliases, not the deprecated registry stages.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from wildtrain.errors import WildtrainError

CHALLENGER, CHAMPION = "challenger", "champion"
PYFUNC_CODE = Path(__file__).with_name("serve.py")  # logged as code, not pickled
PACKAGE = Path(__file__).parent  # carried with every logged model (code_paths): it loads without this repo


@dataclass(frozen=True)
class Decision:
    champion: bool
    reason: str
    champion_version_before: str | None
    champion_metric_before: float | None
    reevaluated: dict | None = None  # the champion's score on this test set, when it had to be computed


def _one_line(e: Exception) -> str:
    text = " ".join(str(getattr(e, "message", None) or e).split())
    return text[:300]


def current_aliases(client, name: str) -> tuple[object | None, dict[str, str]]:
    """(the champion's ModelVersion or None, alias -> version). None when the model or its alias does not exist;
    anything else (a server down, a permission error) is an error: treating it as "no champion" would promote a
    version by accident."""
    from mlflow.exceptions import MlflowException

    try:
        aliases = {k: str(v) for k, v in (client.get_registered_model(name).aliases or {}).items()}
        return (client.get_model_version(name, aliases[CHAMPION]) if CHAMPION in aliases else None), aliases
    except MlflowException as e:
        if e.error_code == "RESOURCE_DOES_NOT_EXIST" and "registered model" in str(e.message).lower():
            return None, {}
        raise WildtrainError(f"MLflow registry: cannot look up the champion of '{name}' ({_one_line(e)}); "
                             f"nothing registered, no alias changed") from None


def gate(metric: str, value: float, evaluation: str, champion, reevaluate: Callable[[object], float]) -> Decision:
    """Champion if there is none, or if `value` is at least the champion's `metric` on the same evaluation."""
    if champion is None:
        return Decision(True, f"no champion yet; becomes champion with {metric}={value:.4f}", None, None)
    v = champion.version
    recorded = champion.tags.get(metric)
    if champion.tags.get("evaluation_hash") == evaluation and recorded is not None:
        current, again = float(recorded), None
    else:
        try:
            current = float(reevaluate(champion))
        except WildtrainError as e:
            return Decision(False, f"champion v{v} was scored on another test set or evaluator and cannot be "
                                   f"re-evaluated on this one ({e}); stays challenger — promote by hand if intended",
                            v, None)
        again = {"version": int(v), metric: current, "evaluation_hash": evaluation,
                 "recorded": None if recorded is None else float(recorded)}
    where = " (re-evaluated on this test set)" if again else ""
    if value >= current:
        return Decision(True, f"{metric} {value:.4f} >= champion v{v}'s {current:.4f}{where}", v, current, again)
    return Decision(False, f"{metric} {value:.4f} < champion v{v}'s {current:.4f}{where}; stays challenger",
                    v, current, again)


def download_model_dir(model_uri: str, dst: Path) -> Path:
    """A registered version's model folder (the pyfunc's `model` artifact)."""
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(dst)))
    return logged_model_dir(local, model_uri)


def logged_model_dir(local: Path, where: str) -> Path:
    """The model folder inside a downloaded pyfunc: its `model` artifact, wherever MLmodel says it went."""
    from wildtrain.io import read_yaml

    mlmodel = local / "MLmodel"
    artifacts = ((read_yaml(mlmodel, "MLmodel") or {}).get("flavors", {}).get("python_function", {})
                 .get("artifacts", {})) if mlmodel.is_file() else {}
    folder = local / artifacts.get("model", {}).get("path", "artifacts/model")
    if not (folder / "model.json").is_file():
        raise WildtrainError(f"{where}: holds no wildtrain model folder (registered by an older version?)")
    return folder


def register_model(*, run_id: str, name: str, gate_metric: str, metrics: dict, evaluation: str, tags: dict[str, str],
                   model_dir: Path, artifacts: list[Path], pip_requirements: list[str], signature=None,
                   input_example=None, reevaluate: Callable[[Path], float]) -> dict:
    """Log the model folder as a pyfunc into `run_id`, register a version, apply the alias gate.

    `reevaluate(folder)` scores a champion's model folder on the current test split (gate_metric)."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    if gate_metric not in metrics:
        raise WildtrainError(f"gate_metric: '{gate_metric}' is not an evaluation metric "
                             f"(available: {', '.join(sorted(metrics))})")
    client = MlflowClient()
    value = float(metrics[gate_metric])
    champion, aliases_before = current_aliases(client, name)
    with tempfile.TemporaryDirectory(prefix="wildtrain-champion-") as tmp:
        def rescore(mv) -> float:
            try:
                folder = download_model_dir(f"models:/{name}/{mv.version}", Path(tmp))
            except MlflowException as e:
                raise WildtrainError(f"cannot download v{mv.version} ({_one_line(e)})") from None
            return reevaluate(folder)

        decision = gate(gate_metric, value, evaluation, champion, rescore)
    mv = None
    try:
        with mlflow.start_run(run_id=run_id):
            mlflow.log_metrics({f"eval/{k}": float(v) for k, v in metrics.items()})
            mlflow.set_tags(tags)
            for path in artifacts:
                mlflow.log_artifact(str(path), artifact_path="artifacts")
            info = mlflow.pyfunc.log_model(name="model", python_model=str(PYFUNC_CODE),
                                           artifacts={"model": str(model_dir)}, code_paths=[str(PACKAGE)],
                                           pip_requirements=pip_requirements, signature=signature,
                                           input_example=input_example)
        version_tags = {**tags, gate_metric: str(value), "gate_metric": gate_metric, "evaluation_hash": evaluation}
        mv = mlflow.register_model(info.model_uri, name, tags=version_tags)
        if decision.champion:  # first: a user who may not promote (team server roles) is refused before any move
            client.set_registered_model_alias(name, CHAMPION, mv.version)
        client.set_registered_model_alias(name, CHALLENGER, mv.version)
        aliases = sorted(client.get_model_version(name, mv.version).aliases)
    except MlflowException as e:
        if mv is not None:  # no half-registered version: a version whose aliases were not all set is removed,
            try:  # and the aliases it took are given back
                client.delete_model_version(name, mv.version)
            except MlflowException:
                pass
            try:
                now = {k: str(v) for k, v in (client.get_registered_model(name).aliases or {}).items()}
                for alias, version in aliases_before.items():
                    if now.get(alias) != version:
                        client.set_registered_model_alias(name, alias, version)
            except MlflowException:
                pass
        if e.get_http_status_code() in (401, 403) or "Permission denied" in str(e):
            import os

            user = os.environ.get("MLFLOW_TRACKING_USERNAME") or "(no MLFLOW_TRACKING_USERNAME)"
            raise WildtrainError(f"MLflow registry: user '{user}' may not register or promote '{name}' "
                                 f"({_one_line(e)}); no alias moved") from None
        raise WildtrainError(f"MLflow registry: registering '{name}' failed ({_one_line(e)}); "
                             f"{'version removed, ' if mv is not None else ''}rerun the stage once the tracking "
                             f"server answers") from None
    return {"model_name": name, "version": int(mv.version), "aliases": aliases,
            "decision": "champion" if decision.champion else "challenger", "reason": decision.reason,
            "gate_metric": gate_metric, "gate_value": value, "evaluation_hash": evaluation,
            "previous_champion_version": None if decision.champion_version_before is None
            else int(decision.champion_version_before),
            "previous_champion_value": decision.champion_metric_before,
            "champion_reevaluated": decision.reevaluated, "run_id": run_id, "model_uri": f"models:/{name}/{mv.version}"}


def resolve(spec: str | None, default_names: list[str], cache: Path) -> Path:
    """A model folder from a local path, `models:/name@alias` or `models:/name/N` (downloaded once into `cache`),
    or, without a spec, the champion of the first of `default_names` that has one."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    if spec and not spec.startswith("models:/"):
        folder = Path(spec)
        if not (folder / "model.json").is_file():
            raise WildtrainError(f"--model: '{spec}' is neither a model folder (with model.json) nor models:/NAME@ALIAS "
                                 f"or models:/NAME/VERSION")
        return folder
    client = MlflowClient()
    try:
        if spec is None:
            for name in default_names:
                champion, _ = current_aliases(client, name)
                if champion is not None:
                    return _cached(name, champion.version, cache)
            raise WildtrainError(f"no champion registered for {' or '.join(default_names)}: run `make repro` or give "
                                 f"--model")
        body = spec.removeprefix("models:/")
        if "@" in body:
            name, alias = body.split("@", 1)
            version = client.get_model_version_by_alias(name, alias).version
        else:
            name, _, version = body.rpartition("/")
            client.get_model_version(name, version)
        return _cached(name, version, cache)
    except MlflowException as e:
        raise WildtrainError(f"--model {spec}: {_one_line(e)}") from None


def _cached(name: str, version: str, cache: Path) -> Path:
    """A registered version's model folder, downloaded once (versions never change)."""
    folder = cache / name / f"v{version}"
    try:
        return logged_model_dir(folder, f"models:/{name}/{version}")
    except WildtrainError:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        return download_model_dir(f"models:/{name}/{version}", folder)
