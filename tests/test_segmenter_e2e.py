"""The segmenter through the real pipeline (the session's one tiny `dvc repro`, tests/pipeline_fixture.py):
train_segmenter -> evaluate_segmenter -> register_segmenter on the survey's masks, tracked in MLflow with its
dataset statistics; then `wildtrain predict` writing mask PNGs and class areas (a large image sliced and
blended), and the registered pyfunc answering JSON-ready rows with the same masks."""

from __future__ import annotations

import base64
import csv
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow
SEGMENTER = "models:/wildtrain-segmenter@champion"
CLASSES = ["background", "elephant", "zebra", "antelope", "bird"]  # the survey's categories, in id order


def test_segmenter_stages_train_evaluate_register_with_tracking(pipeline_repo):
    repo = pipeline_repo.path
    card = json.loads((repo / "models_segmenter/model.json").read_text())
    assert card["family"] == "segmenter" and card["task"] == "semantic-segmentation"
    assert card["class_names"] == CLASSES and card["hashes"]["tensors_sha256"]
    stats = card["extra"]["dataset_stats"]
    assert stats["annotations_without_mask"] == 0 and stats["annotations_with_mask"] > 0  # the survey's RLE masks
    assert set(stats["pixel_frequency"]) == set(CLASSES)
    assert sum(stats["pixel_frequency"].values()) == pytest.approx(1, abs=1e-4)
    assert stats["pixel_frequency"]["background"] > 0.8 and len(stats["mean"]) == 3

    ev = json.loads((repo / "metrics/eval_segmenter.json").read_text())
    assert ev["split"] == "test" and 0 <= ev["miou"] <= 1 and 0 <= ev["pixel_accuracy"] <= 1
    assert set(ev["per_class"]) == set(CLASSES)
    matrix = np.array(ev["confusion"])
    assert matrix.sum() == ev["pixels"] == sum(c["pixels"] for c in ev["per_class"].values())
    assert ev["pixel_accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())
    rows = json.loads((repo / "metrics/plots/segmenter_confusion.json").read_text())
    assert len(rows) == 25 and sum(r["pixels"] for r in rows) == ev["pixels"]
    for png in ("segmenter_confusion.png", "segmenter_examples.png"):
        with Image.open(repo / "metrics/plots" / png) as im:
            assert im.width > 300
    reg = json.loads((repo / "metrics/register_segmenter.json").read_text())
    assert reg["model_name"] == "wildtrain-segmenter" and reg["version"] == 1
    assert reg["aliases"] == ["challenger", "champion"] and reg["exports"] == ["onnx", "openvino", "torchscript"]
    assert "miou" in json.loads((repo / "metrics/train_segmenter/metrics.json").read_text())["val"]

    check = f"""
import mlflow
from mlflow.tracking import MlflowClient
mlflow.set_tracking_uri("sqlite:///{repo / 'mlflow.db'}")
run = MlflowClient().get_run("{card['training']['mlflow_run_id']}")
p = run.data.params
print(p["segmenter.encoder"], p["system.torch"] != "", p["data.pixel_frequency.background"], p["data.mean"],
      "val/miou" in run.data.metrics, run.data.tags["family"])
"""
    out = pipeline_repo.sh("python", "-c", check).stdout.split()
    assert out[0] == "resnet18" and out[1] == "True" and float(out[2]) > 0.8 and out[-2:] == ["True", "segmenter"]


def test_predict_and_serve_masks_of_small_and_large_images(pipeline_repo, tmp_path):
    ws = pipeline_repo.clone(tmp_path / "repo")
    plots = ws.sh("dvc", "plots", "show", "--json", "metrics/plots/segmenter_confusion.json").stdout
    assert '"sum"' in plots and '"pixels"' in plots  # rendered with the pixel-summing template (.dvc/plots)
    raw = sorted((ws.path / "data/raw/images").iterdir())
    src = tmp_path / "survey"
    src.mkdir()
    shutil.copy(raw[0], src / "small.png")
    tiles = [np.asarray(Image.open(f).convert("RGB")) for f in raw[:6]]
    Image.fromarray(np.concatenate([np.concatenate(tiles[:3], 1), np.concatenate(tiles[3:], 1)], 0)).save(
        src / "large.png")  # 480 x 320 from 160 px scenes: sliced into blended windows
    (src / "broken.png").write_bytes(raw[1].read_bytes()[:200])
    out = tmp_path / "out"
    proc = ws.sh("python", "-m", "wildtrain.cli", "predict", str(src), "--out", str(out), "--model",
                 "models_segmenter", "--draw", check=False)
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-2000:]  # the broken file: partial
    assert "px" in proc.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["predicted"] == 2 and report["skipped"][0]["file"] == "broken.png" and report["unit"] == "pixels"
    for name, (w, h) in (("small", (160, 160)), ("large", (480, 320))):
        with Image.open(out / "masks" / f"{name}.png") as im:
            assert im.mode == "P" and im.size == (w, h)
            mask = np.asarray(im)
        assert mask.max() < len(CLASSES)
        assert report["per_image"][f"{name}.png"]["background"] == int((mask == 0).sum())
        assert (out / "draw" / f"{name}.jpg").is_file()
    with open(out / "areas.csv", newline="") as f:
        areas = list(csv.DictReader(f))
    assert [r["image_path"] for r in areas] == ["large.png", "small.png", "TOTAL"]
    assert int(areas[0]["total"]) == 480 * 320 and int(areas[-1]["total"]) == 480 * 320 + 160 * 160

    code = f"""
import json, mlflow, pandas as pd
mlflow.set_tracking_uri("sqlite:///{ws.path / 'mlflow.db'}")
model = mlflow.pyfunc.load_model("{SEGMENTER}")
rows = model.predict(pd.DataFrame({{"image": [open("{src / 'large.png'}", "rb").read()]}}))
print(json.dumps(rows))
"""
    (row,) = json.loads(ws.sh("python", "-c", code).stdout.strip().splitlines()[-1])
    assert row["classes"] == CLASSES and (row["height"], row["width"]) == (320, 480)
    with Image.open(io.BytesIO(base64.b64decode(row["mask_png"]))) as im:
        served = np.asarray(im)
    with Image.open(out / "masks" / "large.png") as im:
        assert (served == np.asarray(im)).all()  # the served model slices and blends as predict does
    assert row["areas"] == {k: v for k, v in report["per_image"]["large.png"].items() if k != "pixel_area"}


def test_killed_segmenter_training_resumes_in_the_same_run(pipeline_repo, tmp_path):
    """The one resume mechanism (tracking.resume + Lightning's last.ckpt): SIGKILL after a checkpoint, rerun."""
    import os
    import signal
    import subprocess
    import time

    import yaml

    ws = pipeline_repo.clone(tmp_path / "repo")
    raw = yaml.safe_load((ws.path / "params.yaml").read_text())
    raw["segmenter"]["epochs"] = 4  # other params than the fixture's: a fresh start, then a resume
    (ws.path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    last = ws.path / "runs/segmenter/last.ckpt"
    proc = subprocess.Popen(["python", "stages/train.py", "segmenter"], cwd=ws.path, env=ws.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert last.exists(), "no checkpoint was written before the deadline"
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = json.loads((ws.path / "runs/segmenter/wildtrain_state.json").read_text())
    assert first["complete"] is False and first["run_id"]
    rerun = ws.sh("python", "stages/train.py", "segmenter")
    assert "(resumed)" in rerun.stdout, rerun.stdout[-2000:]
    info = json.loads((ws.path / "models_segmenter/model.json").read_text())
    assert info["training"]["resumed"] is True and info["training"]["epochs_completed"] == 4
    assert info["training"]["mlflow_run_id"] == first["run_id"]  # the same MLflow run continues
    assert info["extra"]["resumed_after_epochs"] >= 1
