"""Bad input at a stage entry: one clear line naming the key/file, non-zero exit, no traceback."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from conftest import pipeline_env


def run_stage(repo: Path, stage: str, params_patch: str | None = None) -> subprocess.CompletedProcess:
    if params_patch is not None:
        (repo / "params.yaml").write_text((repo / "params.yaml").read_text() + params_patch)
    return subprocess.run(["python", f"stages/{stage}.py"], cwd=repo, env=pipeline_env(repo), capture_output=True,
                          text=True, timeout=300)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_unknown_data_source(repo_copy):
    text = (repo_copy / "params.yaml").read_text().replace("source: synthetic", "source: no/such/folder")
    (repo_copy / "params.yaml").write_text(text)
    proc = run_stage(repo_copy, "prepare")
    assert_one_line_error(proc, "data.source", "no/such/folder", "synthetic")
    assert not (repo_copy / "data/raw").exists()  # nothing half-written


def test_unreadable_params_value(repo_copy):
    text = (repo_copy / "params.yaml").read_text()
    text = re.sub(r"(?m)^(train:.*(?:\n.*)*?\n  epochs: )\d+", r"\1forty", text, count=1)  # the train section's
    assert "epochs: forty" in text
    (repo_copy / "params.yaml").write_text(text)
    assert_one_line_error(run_stage(repo_copy, "prepare"), "params.yaml", "train.epochs", "expected int", "forty")


def test_coco_folder_with_missing_image(repo_copy, tmp_path):
    src = repo_copy / "mydata"
    (src / "images").mkdir(parents=True)
    (src / "annotations.json").write_text(
        '{"images": [{"id": 1, "file_name": "gone.jpg", "width": 10, "height": 10}], "annotations": [],'
        ' "categories": [{"id": 1, "name": "kob"}]}')
    text = (repo_copy / "params.yaml").read_text().replace("source: synthetic", "source: mydata")
    (repo_copy / "params.yaml").write_text(text)
    assert_one_line_error(run_stage(repo_copy, "prepare"), "annotations.json", "gone.jpg", "not found")


@pytest.mark.slow
def test_missing_model_file(repo_copy):
    env = pipeline_env(repo_copy)
    tiny = "data:\n  synthetic:\n    num_images: 6\n    image_size: 96\n"
    (repo_copy / "tiny.yaml").write_text(tiny)
    subprocess.run(["python", "-m", "wildtrain.cli", "config", "apply", "tiny.yaml"], cwd=repo_copy, env=env, check=True)
    for stage in ("prepare", "convert"):
        assert run_stage(repo_copy, stage).returncode == 0
    text = (repo_copy / "params.yaml").read_text().replace("model: yolo11n.yaml", "model: weights/missing.pt")
    (repo_copy / "params.yaml").write_text(text)
    assert_one_line_error(run_stage(repo_copy, "train"), "train.model", "weights/missing.pt", "never downloaded")
    text = text.replace("model: weights/missing.pt", "model: yolo99z.yaml")
    (repo_copy / "params.yaml").write_text(text)
    assert_one_line_error(run_stage(repo_copy, "train"), "train.model", "yolo99z.yaml")
    assert not (repo_copy / "models").exists()


def test_a_python_without_wildtrain_is_one_line(repo_copy):
    """`dvc exp run` from a shell whose `python` is not the project's: the stage says so, no traceback."""
    import sys

    base = Path(sys.base_prefix) / "bin" / "python3"  # the interpreter the venv was made from: no wildtrain there
    env = {k: v for k, v in pipeline_env(repo_copy).items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(base), "stages/train.py", "detector"], cwd=repo_copy, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: {base} cannot import 'wildtrain': run the pipeline with the project's Python "
        f"(source .venv/bin/activate, or make repro / make exp)"]
