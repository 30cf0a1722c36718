"""`wildtrain predict` as a user runs it outside the project: from a folder of their own (no dvc.yaml, no
params.yaml), with a model folder or a registered `models:/` URI, on images with unreadable files among them.
Every bad option or output folder is one `error:` line; options the model's family does not take are refused;
nothing but --out is written to the current folder. The models are small real ones (tests/tiny_models.py)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from tiny_models import scene, species_classifier, yolo_detector


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    from wildtrain import env

    folder = tmp_path_factory.mktemp("models")
    env.configure(folder)
    return {"detector": yolo_detector(folder / "detector"), "classifier": species_classifier(folder / "classifier")}


class User:
    """A user's folder outside the repository: imgs/ with two scenes, a text file named bad.jpg (Ultralytics'
    patched PIL.Image.open raises ModuleNotFoundError on it) and a truncated PNG; an empty folder; a plain file."""

    def __init__(self, root: Path):
        self.cwd, self.cache = root / "work", root / "cache"
        imgs = self.cwd / "imgs"
        imgs.mkdir(parents=True)
        rng = np.random.default_rng(1)
        for i in range(2):
            Image.fromarray(scene(rng, 160, 160)).save(imgs / f"scene{i}.png")
        (imgs / "bad.jpg").write_text("not an image\n")
        (imgs / "truncated.png").write_bytes((imgs / "scene0.png").read_bytes()[:300])
        (self.cwd / "empty").mkdir()
        (self.cwd / "afile").write_text("x")
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("YOLO_CONFIG_DIR", "MLFLOW_TRACKING_URI", "WILDTRAIN_CACHE_DIR", "PYTHONPATH")}
        self.env.update(PYTHONPATH=str(REPO / "src"), XDG_CACHE_HOME=str(self.cache))

    def predict(self, *args: str, code: int, **env: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "wildtrain.cli", "predict", *args], cwd=self.cwd,
                              env={**self.env, **env}, capture_output=True, text=True, timeout=600)
        assert proc.returncode == code, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
        return proc

    def error(self, *args: str, **env: str) -> str:
        """The one `error:` line of a refused run (exit 2)."""
        proc = self.predict(*args, code=2, **env)
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1, proc.stderr[-3000:]
        return errors[0]

    def listing(self) -> list[str]:
        return sorted(os.listdir(self.cwd))


@pytest.fixture
def user(tmp_path) -> User:
    assert REPO not in tmp_path.parents
    return User(tmp_path)


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_model_folder_outside_the_project_skips_unreadable_files_and_writes_only_out(models, user):
    before = user.listing()
    proc = user.predict("imgs", "--model", str(models["detector"]), "--out", "out", "--conf", "0.01", "--draw",
                        code=3)  # 3: partial, the good images predicted
    assert f"model folder {models['detector']}" in proc.stdout and "2 skipped" in proc.stdout
    report = json.loads((user.cwd / "out/report.json").read_text())
    assert report["images_in"] == 4 and report["predicted"] == 2
    assert {s["file"] for s in report["skipped"]} == {"bad.jpg", "truncated.png"}
    assert all(s["reason"] for s in report["skipped"])
    assert report["model"]["folder"] == str(models["detector"]) and report["model"]["name"] is None
    assert report["options"]["conf"] == 0.01 and report["options"]["max_det"] == 300  # built-in defaults otherwise
    assert [r["image_path"] for r in rows(user.cwd / "out/counts.csv")] == ["scene0.png", "scene1.png", "TOTAL"]
    assert len(list((user.cwd / "out/draw").glob("*.jpg"))) == 2
    # nothing but --out in the current folder: no mlflow.db, no .ultralytics/; Ultralytics' settings in the cache
    assert user.listing() == sorted(before + ["out"])
    assert (user.cache / "wildtrain/ultralytics/Ultralytics/settings.json").is_file()

    # another model into the same folder: refused, nothing removed
    line = user.error("imgs", "--model", str(models["classifier"]), "--out", "out")
    assert "--out out: holds a previous predict run's outputs" in line and "--overwrite" in line
    assert (user.cwd / "out/draw").is_dir() and (user.cwd / "out/detections.csv").is_file()
    # --overwrite: the detector's outputs are gone, not mixed with the classifier's; a hidden file is left alone
    (user.cwd / "out/.keep").write_text("")
    user.predict("imgs", "--model", str(models["classifier"]), "--out", "out", "--overwrite", code=3)
    assert sorted(os.listdir(user.cwd / "out")) == [".keep", "classifications.csv", "counts.csv", "report.json"]
    assert json.loads((user.cwd / "out/report.json").read_text())["model_card"]["family"] == "classifier"


def test_bad_options_are_one_line_each(models, user):
    (user.cwd / "notes").mkdir()
    (user.cwd / "notes/todo.txt").write_text("mine")
    det = str(models["detector"])
    for args, needle in (
            (["imgs", "--conf", "2"], "--conf 2: must be in [0, 1)"),
            (["imgs", "--iou", "-1"], "--iou -1: must be in (0, 1]"),
            (["imgs", "--max-det", "0"], "--max-det 0: must be >= 1"),
            (["imgs", "--overlap", "1"], "--overlap 1: must be in [0, 1)"),
            (["imgs", "--merge-ios", "0"], "--merge-ios 0: must be in (0, 1]"),
            (["imgs", "--batch", "0"], "--batch 0: must be >= 1"),
            (["imgs", "--slice", "7"], "--slice 7: must be auto, off or a window size in px (>= 32)"),
            (["imgs", "--conf", "high"], "Invalid value for '--conf'"),
            (["imgs", "--colour", "red"], "No such option: --colour"),
            (["imgs", "--device", "tpu"], "--device: expected auto, cpu"),
            (["no/such/folder"], "no/such/folder: no such file or folder"),
            (["imgs", "--out", "afile"], "--out afile: is a file, not a folder"),
            (["imgs", "--out", "imgs/out"], "--out imgs/out: is inside the source folder imgs"),
            (["imgs", "--out", "notes", "--overwrite"], "--out notes: holds files that are not wildtrain predict "
                                                        "outputs (todo.txt)"),
            (["imgs", "--model", "afile"], "--model: 'afile' is neither a model folder")):
        line = user.error(*args, "--model", det) if "--model" not in args else user.error(*args)
        assert needle in line, (args, line)
    assert (user.cwd / "notes/todo.txt").read_text() == "mine"
    assert user.listing() == ["afile", "empty", "imgs", "notes"]


@pytest.mark.slow
def test_empty_sources_and_options_a_family_does_not_take_are_refused(models, user):
    line = user.error("empty", "--model", str(models["detector"]))
    assert line == ("error: no images found in empty (looked for .jpg, .jpeg, .png, .tif, .tiff, .bmp, .webp)")
    classifier = str(models["classifier"])
    for option in (["--conf", "0.3"], ["--slice", "off"]):
        line = user.error("imgs", "--model", classifier, *option)
        assert f"{option[0]} does not apply to a classifier model" in line and "--batch" in line, line
    assert "--draw does not apply to a classifier model" in user.error("imgs", "--model", classifier, "--draw")
    assert user.listing() == ["afile", "empty", "imgs"]  # no predictions/ folder from a refused run


REGISTER = """
import sys
from pathlib import Path
from wildtrain import env
env.configure(Path(sys.argv[1]))
sys.path.insert(0, sys.argv[4])
import gate_tables
import mlflow
from wildtrain.evaluate.detection_table import DetectionTable
from wildtrain.registry import register_model
mlflow.set_tracking_uri(sys.argv[2])
mlflow.set_experiment("tiny")
with mlflow.start_run() as run:
    pass
table, value = gate_tables.table_file(Path(sys.argv[1]) / "tables", [True, False, True], "e")
register_model(run_id=run.info.run_id, name="tiny-detector", gate_metric="map50_95", metrics={"map50_95": value},
               evaluation="e", tags={}, model_dir=Path(sys.argv[3]), artifacts=[], pip_requirements=[],
               table_file=table, table_type=DetectionTable, reevaluate=lambda folder: (0.0, None))
"""


@pytest.mark.slow
def test_registered_model_outside_the_project(models, user, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    tests = str(Path(__file__).parent)  # gate_tables: the evaluation table a version is registered with
    subprocess.run([sys.executable, "-c", REGISTER, str(store), uri, str(models["detector"]), tests], cwd=store,
                   env=user.env, check=True, capture_output=True, timeout=600)

    here = f"sqlite:///{user.cwd / 'mlflow.db'}"  # no MLFLOW_TRACKING_URI: the current folder's store, if any
    line = user.error("imgs", "--model", "models:/tiny-detector@champion")
    assert f"no MLflow store at {here}" in line and "MLFLOW_TRACKING_URI" in line
    line = user.error("imgs", "--model", "models:/tiny-detector/7", MLFLOW_TRACKING_URI=uri)
    assert line.endswith(f"(tracking URI {uri})"), line
    line = user.error("imgs", MLFLOW_TRACKING_URI=uri)  # the default: a champion of the pipeline's names
    assert f"no champion registered for wildtrain-two-stage or wildtrain-detector in {uri}" in line

    proc = user.predict("imgs", "--model", "models:/tiny-detector@champion", "--out", "out", code=3,
                        MLFLOW_TRACKING_URI=uri)
    assert f"tiny-detector v1 (@champion) from {uri}" in proc.stdout
    model = json.loads((user.cwd / "out/report.json").read_text())["model"]
    assert {k: model[k] for k in ("name", "version", "alias", "uri", "tracking_uri")} == {
        "name": "tiny-detector", "version": 1, "alias": "champion", "uri": "models:/tiny-detector/1",
        "tracking_uri": uri}
    assert Path(model["folder"]).is_relative_to(user.cache / "wildtrain/models")  # downloaded into the user cache
    assert user.listing() == ["afile", "empty", "imgs", "out"]  # no mlflow.db, mlruns/ or .ultralytics/ here
