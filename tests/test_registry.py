"""The alias gate, against a real MLflow registry on a sqlite store."""

import json

import pytest

from wildtrain.registry import CHALLENGER, CHAMPION, gate, register_model


def test_gate_rules():
    assert gate("map50_95", 0.2, None, None).champion
    assert gate("map50_95", 0.5, 0.5, "3").champion  # ties promote: "at least the champion's"
    d = gate("map50_95", 0.4, 0.5, "3")
    assert not d.champion and "stays challenger" in d.reason


@pytest.mark.slow
def test_register_versions_and_aliases_on_sqlite(tmp_path, monkeypatch):
    import mlflow
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)  # MLflow's sqlite store puts artifacts in ./mlruns
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("t")
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"not really weights")
    meta = {"framework": "yolo", "class_names": ["a"], "category_ids": [1], "imgsz": 64}
    decisions = []
    for value in (0.30, 0.20, 0.35):
        with mlflow.start_run() as run:
            pass
        out = register_model(run_id=run.info.run_id, name="det", gate_metric="map50_95",
                             metrics={"map50_95": value, "map50": value + 0.1}, tags={"dataset_hash": "abc"},
                             weights=weights, meta=meta, artifacts=[], pip_requirements=[])
        decisions.append((out["version"], out["decision"], out["aliases"]))
        json.dumps(out)  # register.json must be serializable
    assert decisions == [(1, "champion", [CHALLENGER, CHAMPION]), (2, "challenger", [CHALLENGER]),
                         (3, "champion", [CHALLENGER, CHAMPION])]
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("det", CHAMPION).version) == "3"
    v2 = client.get_model_version("det", "2")
    assert v2.aliases == [] and v2.tags["map50_95"] == "0.2" and v2.tags["dataset_hash"] == "abc"
    assert client.get_run(v2.run_id).data.metrics["eval/map50_95"] == pytest.approx(0.2)
