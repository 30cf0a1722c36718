"""A training killed mid-run (SIGKILL) resumes from its last checkpoint and the same MLflow run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import pipeline_env

pytestmark = pytest.mark.slow

OVERLAY = """
data:
  synthetic:
    num_images: 24
    image_size: 128
train:
  epochs: 4
  imgsz: 128
  batch: 8
  workers: 0
  close_mosaic: 0
"""


def test_killed_training_resumes_and_finishes(repo_copy: Path):
    env = pipeline_env(repo_copy)
    (repo_copy / "resume.yaml").write_text(OVERLAY)
    subprocess.run(["python", "-m", "wildtrain.cli", "config", "apply", "resume.yaml"], cwd=repo_copy, env=env,
                   check=True, capture_output=True)
    for stage in ("prepare", "convert"):
        subprocess.run(["python", f"stages/{stage}.py"], cwd=repo_copy, env=env, check=True, capture_output=True)

    last = repo_copy / "runs/detector/weights/last.pt"
    proc = subprocess.Popen(["python", "stages/train.py", "detector"], cwd=repo_copy, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert last.exists(), "no checkpoint was written before the deadline"
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (repo_copy / "models/model.pt").exists()  # nothing a later stage would trust
    first_run = json.loads((repo_copy / "runs/detector/wildtrain_state.json").read_text())
    assert first_run["complete"] is False

    rerun = subprocess.run(["python", "stages/train.py", "detector"], cwd=repo_copy, env=env, capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming from" in rerun.stdout
    info = json.loads((repo_copy / "models/model.json").read_text())["training"]
    assert info["resumed"] is True and info["epochs_completed"] == 4
    assert info["mlflow_run_id"] == first_run["run_id"]  # the same MLflow run continues
    rows = (repo_copy / "metrics/train/plots/metrics/train/box_loss.tsv").read_text().splitlines()[1:]
    assert sorted({int(r.split("\t")[0]) for r in rows}) == [0, 1, 2, 3]  # dvclive kept the killed run's epochs

    again = subprocess.run(["python", "stages/train.py", "detector"], cwd=repo_copy, env=env, capture_output=True, text=True,
                           timeout=600)  # a finished run is not "resumed" again: it trains afresh
    assert again.returncode == 0 and "resuming" not in again.stdout
