import json

import pytest
import yaml

from wildtrain.tracking.lineage import dataset_hash, dvc_stage_hashes, git_commit
from wildtrain.tracking.live import EpochLogger, clean_metric_name, progress_line


def test_metric_names_are_mlflow_safe_and_progress_is_one_line():
    assert clean_metric_name("metrics/mAP50-95(B)") == "metrics/mAP50-95_B"
    line = progress_line(2, 10, {"train/box_loss": 1.5, "metrics/mAP50(B)": 0.25, "lr/pg0": 0.01})
    assert line == "epoch 3/10  train/box_loss 1.5  metrics/mAP50_B 0.25"


def test_dataset_hash_depends_on_content_not_order():
    a = {"x.png": "1", "y.png": "2"}
    assert dataset_hash(a) == dataset_hash(dict(reversed(list(a.items()))))
    assert dataset_hash(a) != dataset_hash({"x.png": "1", "y.png": "3"})


def test_dvc_stage_hashes_and_git_outside_repo(tmp_path):
    assert dvc_stage_hashes(tmp_path) == {}
    lock = {"schema": "2.0", "stages": {"train": {"cmd": "python stages/train.py", "deps": [{"path": "a", "md5": "1"}]}}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    first = dvc_stage_hashes(tmp_path)
    lock["stages"]["train"]["deps"][0]["md5"] = "2"
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    assert set(first) == {"dvc_stage.train"} and dvc_stage_hashes(tmp_path) != first
    assert git_commit(tmp_path)["git_commit"] == "unknown"


@pytest.mark.slow
def test_epoch_logger_writes_dvclive_and_mlflow(tmp_path, monkeypatch):
    import mlflow
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("live")  # the fluent API caches the last experiment id across stores
    with mlflow.start_run() as run:
        logger = EpochLogger(tmp_path / "live", run.info.run_id)
        for epoch in range(3):
            logger.log_epoch(epoch, {"train/box_loss": 3.0 - epoch, "metrics/mAP50(B)": 0.1 * epoch, "skip": "text",
                                     "nan": float("nan")})
        logger.close()
    history = MlflowClient().get_metric_history(run.info.run_id, "metrics/mAP50_B")
    assert [(m.step, round(m.value, 6)) for m in history] == [(0, 0.0), (1, 0.1), (2, 0.2)]
    rows = (tmp_path / "live/plots/metrics/train/box_loss.tsv").read_text().splitlines()
    assert [r.split("\t")[0] for r in rows[1:]] == ["0", "1", "2"]
    summary = json.loads((tmp_path / "live/metrics.json").read_text())
    assert summary["train"]["box_loss"] == 1.0 and "nan" not in summary
    assert not (tmp_path / "dvc.yaml").exists()  # dvclive must not write its own dvc.yaml


def test_a_resume_after_a_kill_mid_summary_write_keeps_the_history(tmp_path):
    """dvclive rewrites metrics.json in place: a training SIGKILLed then leaves it cut short, and resuming must go on
    (the tests/test_phases.py resume met it) with the per-epoch history intact."""
    logger = EpochLogger(tmp_path / "live", None)
    for epoch in range(2):
        logger.log_epoch(epoch, {"train/box_loss": 3.0 - epoch})
    (tmp_path / "live/metrics.json").write_text('{"train": {"box_lo')  # the kill
    resumed = EpochLogger(tmp_path / "live", None, resume=True)
    resumed.log_epoch(2, {"train/box_loss": 1.0})
    resumed.close()
    rows = (tmp_path / "live/plots/metrics/train/box_loss.tsv").read_text().splitlines()
    assert [r.split("\t")[0] for r in rows[1:]] == ["0", "1", "2"]
    assert json.loads((tmp_path / "live/metrics.json").read_text())["train"]["box_loss"] == 1.0


def test_results_csv_replay_for_ddp_runs(tmp_path):
    from wildtrain.families.detector.yolo import replay_results_csv

    (tmp_path / "results.csv").write_text(
        "epoch,time,train/box_loss,metrics/mAP50(B)\n1,8.1,6.6,0\n2,16.0,5.5,0.125\n")
    seen = []
    replay_results_csv(tmp_path / "results.csv", lambda e, m: seen.append((e, m)), skip={0})
    assert seen == [(1, {"train/box_loss": 5.5, "metrics/mAP50(B)": 0.125})]
