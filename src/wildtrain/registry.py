"""The MLflow model registry: log a model folder as a pyfunc with its lineage, register a version, gate aliases.

Every new version gets the alias `challenger`; it also becomes `champion` only if its gain on the gate metric over
the current champion is beyond noise: a paired bootstrap of challenger minus champion over the same test units
(both evaluated on the same test set with the same evaluator: the `evaluation_hash` of both), promoted only when
the lower bound of the gain's 95% interval is above the margin (default 0). A tie, or a gain within noise, stays
challenger. The champion's per-unit table is logged with its version; when it is missing or was scored on something
else, the champion is re-evaluated on the current split first (the caller's `reevaluate`); where that is
impossible, the new version is not promoted and the reason says why. Only "no such model" or "no champion alias"
means there is no champion: any other registry error stops with one line before an alias changes. Aliases, not the
deprecated registry stages.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from wildtrain.errors import WildtrainError
from wildtrain.evaluate import bootstrap

CHALLENGER, CHAMPION = "challenger", "champion"
TABLE_TAG = "evaluation_table"  # version tag: the run artifact path of the version's per-unit evaluation table
LOWER_IS_BETTER = ("count_mae", "count_rmse")  # gate metrics where a gain is a decrease
SIGNED = ("count_bias",)  # neither better up nor down: not a gate metric
PYFUNC_CODE = Path(__file__).with_name("serve.py")  # logged as code, not pickled
PACKAGE = Path(__file__).parent  # carried with every logged model (code_paths): it loads without this repo


@dataclass(frozen=True)
class Decision:
    champion: bool
    reason: str
    champion_version_before: str | None
    champion_metric_before: float | None
    reevaluated: dict | None = None  # the champion's score on this test set, when it had to be computed
    delta: float | None = None  # challenger minus champion on the gate metric
    delta_ci95: list[float] | None = None  # its paired bootstrap 95% interval


@dataclass(frozen=True)
class Bootstrap:
    resamples: int = 1000
    seed: int = 0
    margin: float = 0.0  # the gain's lower bound must be above this


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


def gate(metric: str, value: float, evaluation: str, table, champion, champion_table: Callable[[object], object],
         reevaluate: Callable[[object], tuple[float, object]], settings: Bootstrap = Bootstrap()) -> Decision:
    """Champion if there is none, or if the paired bootstrap puts the gain on `metric` over the champion (same test
    units) above settings.margin at its 95% lower bound. `champion_table(mv)` gives the champion's logged table for
    this evaluation, or None; then `reevaluate(mv)` scores it here: (its metric, its table)."""
    if champion is None:
        return Decision(True, f"no champion yet; becomes champion with {metric}={value:.4f}", None, None)
    v = champion.version
    recorded = champion.tags.get(metric)
    theirs = champion_table(champion) if champion.tags.get("evaluation_hash") == evaluation else None
    again, why = None, ("its per-unit table is missing" if champion.tags.get("evaluation_hash") == evaluation
                        else "it was scored on another test set or evaluator")
    if theirs is None:
        try:
            current, theirs = reevaluate(champion)
        except WildtrainError as e:
            return Decision(False, f"champion v{v}: {why} and it cannot be re-evaluated on this one ({e}); stays "
                                   f"challenger — promote by hand if intended", v, None)
        again = {"version": int(v), metric: float(current), "evaluation_hash": evaluation,
                 "recorded": None if recorded is None else float(recorded)}
    try:
        delta, ci = bootstrap.paired(table, theirs, metric, settings.resamples, settings.seed)
    except WildtrainError as e:
        return Decision(False, f"champion v{v} does not compare with this evaluation ({e}); stays challenger", v, None,
                        again)
    current = value - delta
    where = f" (re-evaluated on this test set: {why})" if again else ""
    head = f"{metric} {value:.4f} vs champion v{v}'s {current:.4f}{where}: "
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    gain = sign * delta
    low, high = sorted(sign * c for c in ci) if ci else (float("nan"), float("nan"))
    span = f"gain {gain:+.4f} [{low:+.4f}, {high:+.4f}]" + (" (lower is better)" if sign < 0 else "")
    if ci and low > settings.margin:
        why_promoted = f": its lower bound is above the margin {settings.margin:g}" if settings.margin else \
            " beyond noise"
        return Decision(True, head + span + why_promoted + "; becomes champion", v, current, again, delta, ci)
    if ci and high < 0:
        verdict = "worse than the champion beyond noise"
    elif ci and low > 0:
        verdict = f"beyond noise but its lower bound is not above the margin {settings.margin:g}"
    elif ci and low == high == 0:
        verdict = "a tie (the same predictions on every test unit)"
    else:
        verdict = "within noise"
    return Decision(False, head + f"{span} {verdict}; stays challenger", v, current, again, delta, ci)


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


def champion_table_loader(evaluation: str, dst: Path, table_type: type) -> Callable[[object], object]:
    """mv -> its logged per-unit table (TABLE_TAG) if it is one of this evaluation, else None (then the gate
    re-evaluates the champion)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    def load(mv):
        path = (mv.tags or {}).get(TABLE_TAG)
        if not path:
            return None
        try:
            local = mlflow.artifacts.download_artifacts(run_id=mv.run_id, artifact_path=path,
                                                        dst_path=str(dst / f"v{mv.version}"))
            table, meta = bootstrap.load(Path(local), table_type)
        except (MlflowException, WildtrainError, OSError):
            return None
        return table if meta.get("evaluation_hash") == evaluation else None

    return load


def register_model(*, run_id: str, name: str, gate_metric: str, metrics: dict, evaluation: str, tags: dict[str, str],
                   model_dir: Path, artifacts: list[Path], pip_requirements: list[str], table_file: Path,
                   table_type: type, settings: Bootstrap = Bootstrap(), signature=None, input_example=None,
                   reevaluate: Callable[[Path], tuple[float, object]]) -> dict:
    """Log the model folder as a pyfunc into `run_id`, register a version, apply the alias gate.

    `table_file`: the challenger's per-unit evaluation table (wildtrain.evaluate.bootstrap; a `table_type`), logged
    with the version as `evaluation/v<N>/` so a later challenger can be compared with it. `reevaluate(folder)` scores a champion's
    model folder on the current test split: (its gate_metric, its table)."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    if gate_metric not in metrics:
        raise WildtrainError(f"gate_metric: '{gate_metric}' is not an evaluation metric "
                             f"(available: {', '.join(sorted(metrics))})")
    if gate_metric in SIGNED:
        raise WildtrainError(f"gate_metric: '{gate_metric}' is signed (neither direction is better): gate on "
                             f"{' or '.join(LOWER_IS_BETTER)}")
    table, meta = bootstrap.load(table_file, table_type)
    if meta.get("evaluation_hash") != evaluation:
        raise WildtrainError(f"{table_file}: its evaluation is not the one of the metrics (rerun the evaluate stage)")
    gated = sorted(k for k in bootstrap.identity(table) if not k.startswith("per_class.") and k not in SIGNED)
    if gate_metric not in gated:
        raise WildtrainError(f"gate_metric: '{gate_metric}' has no per-image table to tell a gain from noise "
                             f"(gate on one of: {', '.join(gated)})")
    client = MlflowClient()
    value = float(metrics[gate_metric])
    champion, aliases_before = current_aliases(client, name)
    with tempfile.TemporaryDirectory(prefix="wildtrain-champion-") as tmp:
        def rescore(mv) -> tuple[float, object]:
            try:
                folder = download_model_dir(f"models:/{name}/{mv.version}", Path(tmp))
            except MlflowException as e:
                raise WildtrainError(f"cannot download v{mv.version} ({_one_line(e)})") from None
            return reevaluate(folder)

        decision = gate(gate_metric, value, evaluation, table, champion, champion_table_loader(evaluation, Path(tmp), table_type),
                        rescore, settings)
    gate_record = {"gate_metric": gate_metric, "gate_margin": settings.margin, "delta": decision.delta,
                   "delta_ci95": decision.delta_ci95, "decision": "champion" if decision.champion else "challenger"}
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
        low, high = metrics.get(gate_metric + bootstrap.LOW), metrics.get(gate_metric + bootstrap.HIGH)
        ci = None if low is None or high is None else [float(low), float(high)]
        version_tags = {**tags, gate_metric: str(value), "evaluation_hash": evaluation,
                        **({f"{gate_metric}{bootstrap.CI_SUFFIX}": str(ci)} if ci else {}),
                        **{f"gate_{k}" if not k.startswith("gate_") else k: str(v) for k, v in gate_record.items()},
                        "gate_reason": decision.reason[:4000]}
        mv = mlflow.register_model(info.model_uri, name, tags=version_tags)
        folder = f"evaluation/v{mv.version}"  # a run may register several versions
        client.log_artifact(run_id, str(table_file), artifact_path=folder)
        client.set_model_version_tag(name, mv.version, TABLE_TAG, f"{folder}/{table_file.name}")
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
            "decision": gate_record["decision"], "reason": decision.reason,
            "gate_metric": gate_metric, "gate_value": value, "gate_value_ci95": ci,
            "gate_margin": settings.margin, "delta": decision.delta, "delta_ci95": decision.delta_ci95,
            **({"delta_ci95_low": decision.delta_ci95[0], "delta_ci95_high": decision.delta_ci95[1]}
               if decision.delta_ci95 else {}),
            "bootstrap": {"resamples": settings.resamples, "seed": settings.seed},
            "evaluation_hash": evaluation,
            "previous_champion_version": None if decision.champion_version_before is None
            else int(decision.champion_version_before),
            "previous_champion_value": decision.champion_metric_before,
            "champion_reevaluated": decision.reevaluated, "run_id": run_id, "model_uri": f"models:/{name}/{mv.version}",
            "evaluation_table": f"{folder}/{table_file.name}"}


@dataclass(frozen=True)
class ModelRef:
    """Which model a command ran: the folder, and where the registry had it (printed, and kept in report.json)."""

    folder: Path
    name: str | None = None  # a registered model's name, version and the alias it was found by
    version: str | None = None
    alias: str | None = None
    tracking_uri: str | None = None

    def describe(self) -> str:
        if self.name is None:
            return f"model folder {self.folder}"
        alias = f" (@{self.alias})" if self.alias else ""
        return f"{self.name} v{self.version}{alias} from {self.tracking_uri}"

    def record(self) -> dict:
        return {"name": self.name, "version": None if self.version is None else int(self.version),
                "alias": self.alias, "uri": None if self.name is None else f"models:/{self.name}/{self.version}",
                "tracking_uri": self.tracking_uri, "folder": str(self.folder)}


def check_store(uri: str, what: str, hint: str = "or give --model a model folder") -> None:
    """A local store (sqlite file, file:/path folder) must exist: MLflow would create an empty one (an mlflow.db
    in the current folder) and then report that the model does not exist."""
    from urllib.parse import urlparse

    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
    elif uri.startswith("file:") or ("://" not in uri and not uri.startswith("databricks")):
        path = Path(urlparse(uri).path if uri.startswith("file:") else uri)
    else:
        return  # a server: it answers for itself
    if not path.exists():
        raise WildtrainError(f"{what}: no MLflow store at {uri} ({path} does not exist); set MLFLOW_TRACKING_URI to "
                             f"the tracking server or store that holds the model{', ' + hint if hint else ''}")


def resolve_model(spec: str | None, default_names: list[str], cache: Path, tracking_uri: str | None = None
                  ) -> ModelRef:
    """A model folder from a local path (no MLflow store is opened), `models:/name@alias` or `models:/name/N`
    (downloaded once into `cache`), or, without a spec, the champion of the first of `default_names` that has
    one. Registry errors name the tracking URI searched."""
    if spec and not spec.startswith("models:/"):
        folder = Path(spec)
        if not (folder / "model.json").is_file():
            raise WildtrainError(f"--model: '{spec}' is neither a model folder (with model.json) nor "
                                 f"models:/NAME@ALIAS or models:/NAME/VERSION")
        return ModelRef(folder.resolve())
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri = tracking_uri or mlflow.get_tracking_uri()
    check_store(uri, f"--model {spec}" if spec else "the default model (no --model)")
    mlflow.set_tracking_uri(uri)  # the download below goes through the same store
    client = MlflowClient(tracking_uri=uri)
    try:
        if spec is None:
            for name in default_names:
                champion, _ = current_aliases(client, name)
                if champion is not None:
                    return ModelRef(_cached(name, champion.version, cache), name, str(champion.version), CHAMPION, uri)
            raise WildtrainError(f"no champion registered for {' or '.join(default_names)} in {uri}: run `make repro` "
                                 f"or give --model")
        body = spec.removeprefix("models:/")
        alias = None
        if "@" in body:
            name, alias = body.split("@", 1)
            version = client.get_model_version_by_alias(name, alias).version
        else:
            name, _, version = body.rpartition("/")
            client.get_model_version(name, version)
        return ModelRef(_cached(name, str(version), cache), name, str(version), alias, uri)
    except MlflowException as e:
        raise WildtrainError(f"--model {spec}: {_one_line(e)} (tracking URI {uri})") from None


def resolve(spec: str | None, default_names: list[str], cache: Path) -> Path:
    """resolve_model's folder, through the tracking URI MLflow is set to."""
    return resolve_model(spec, default_names, cache).folder


def _cached(name: str, version: str, cache: Path) -> Path:
    """A registered version's model folder, downloaded once (versions never change): into a temporary folder
    beside it, renamed when complete, so an interrupted download is never taken for a model."""
    import shutil

    folder = cache / name / f"v{version}"
    try:
        return logged_model_dir(folder, f"models:/{name}/{version}")
    except WildtrainError:
        shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".v{version}.", dir=folder.parent))
    try:
        download_model_dir(f"models:/{name}/{version}", tmp)
        try:
            tmp.rename(folder)
        except OSError:  # another process got it first: its copy is as good
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return logged_model_dir(folder, f"models:/{name}/{version}")
