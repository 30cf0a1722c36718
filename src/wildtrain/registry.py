"""The MLflow model registry: log a trained model with its lineage, register a version, gate aliases.

Every new version gets the alias `challenger`; it also becomes `champion` only if its gate metric is
at least the current champion's. Aliases, not the deprecated registry stages.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from wildtrain.errors import WildtrainError

CHALLENGER, CHAMPION = "challenger", "champion"
MODEL_CODE = Path(__file__).with_name("registry_model.py")  # logged as code, not pickled


@dataclass(frozen=True)
class Decision:
    champion: bool
    reason: str
    champion_version_before: str | None
    champion_metric_before: float | None


def gate(metric: str, value: float, current: float | None, current_version: str | None) -> Decision:
    """Champion if there is none yet, or if `value` is at least the current champion's `metric`."""
    if current_version is None:
        return Decision(True, f"no champion yet; becomes champion with {metric}={value:.4f}", None, None)
    if current is None:
        return Decision(True, f"champion v{current_version} has no {metric}; replaced with {metric}={value:.4f}",
                        current_version, None)
    if value >= current:
        return Decision(True, f"{metric} {value:.4f} >= champion v{current_version}'s {current:.4f}",
                        current_version, current)
    return Decision(False, f"{metric} {value:.4f} < champion v{current_version}'s {current:.4f}; stays challenger",
                    current_version, current)


def _current_champion(client, name: str, metric: str) -> tuple[str | None, float | None]:
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None, None
    value = mv.tags.get(metric)
    if value is None and mv.run_id:
        value = client.get_run(mv.run_id).data.metrics.get(f"eval/{metric}")
    return mv.version, None if value is None else float(value)


def register_model(*, run_id: str, name: str, gate_metric: str, metrics: dict[str, float], tags: dict[str, str],
                   weights: Path, meta: dict, artifacts: list[Path], pip_requirements: list[str],
                   python_model: Path = MODEL_CODE, signature=None, input_example=None) -> dict:
    """Log model + lineage into the training run, register a version and apply the alias gate.

    `python_model` is the pyfunc code file (the detector's by default); it reads the artifacts
    `weights` (the model file) and `meta` (model_meta.json).
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    if gate_metric not in metrics:
        raise WildtrainError(f"register.gate_metric: '{gate_metric}' is not an evaluation metric "
                             f"(available: {', '.join(sorted(metrics))})")
    client = MlflowClient()
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics({f"eval/{k}": v for k, v in metrics.items()})
        mlflow.set_tags(tags)
        for path in artifacts:
            mlflow.log_artifact(str(path), artifact_path="artifacts")
        with tempfile.TemporaryDirectory() as tmp:
            meta_file = Path(tmp) / "model_meta.json"
            meta_file.write_text(json.dumps(meta, indent=2))
            info = mlflow.pyfunc.log_model(name="model", python_model=str(python_model),
                                           artifacts={"weights": str(weights), "meta": str(meta_file)},
                                           pip_requirements=pip_requirements, signature=signature,
                                           input_example=input_example)
    value = float(metrics[gate_metric])
    before_version, before_value = _current_champion(client, name, gate_metric)
    version_tags = {**tags, gate_metric: str(value), "gate_metric": gate_metric}
    mv = mlflow.register_model(info.model_uri, name, tags=version_tags)
    client.set_registered_model_alias(name, CHALLENGER, mv.version)
    decision = gate(gate_metric, value, before_value, before_version)
    if decision.champion:
        client.set_registered_model_alias(name, CHAMPION, mv.version)
    aliases = sorted(client.get_model_version(name, mv.version).aliases)
    return {"model_name": name, "version": int(mv.version), "aliases": aliases,
            "decision": "champion" if decision.champion else "challenger", "reason": decision.reason,
            "gate_metric": gate_metric, "gate_value": value,
            "previous_champion_version": None if before_version is None else int(before_version),
            "previous_champion_value": before_value, "run_id": run_id, "model_uri": f"models:/{name}/{mv.version}"}
