"""The Python API (wildtrain.api) as docs/how-to/python-api.md shows it: its examples run as written, as scripts in
a fresh interpreter — the predict ones on small real models (tests/tiny_models.py) outside any project, the train,
evaluate, register and tune ones in a clone of the session's tiny pipeline. `import wildtrain` stays cheap."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import REPO, pipeline_env
from tiny_models import scene, species_classifier, yolo_detector

DOC = REPO / "docs/how-to/python-api.md"


def examples(heading: str) -> str:
    """The python blocks of one `## heading` section of the page, as one script."""
    text = DOC.read_text()
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, heading
    return "\n".join(blocks)


def run_script(code: str, cwd: Path, netlog: Path, env_repo: Path = REPO, timeout: int = 900, **extra: str) -> str:
    script = netlog.parent / "example.py"
    script.write_text(code)
    env = {**pipeline_env(env_repo, netlog), **extra}
    if "XDG_CACHE_HOME" in extra:  # a user outside the project: wildtrain's settings go to the user cache
        env.pop("YOLO_CONFIG_DIR")
    proc = subprocess.run([sys.executable, str(script)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not netlog.exists() or netlog.read_text() == "", netlog.read_text()
    return proc.stdout


@pytest.fixture(scope="module")
def user(tmp_path_factory) -> Path:
    """A folder outside the project: models/detector, models/classifier and survey/DJI_0001.png (320 px: sliced
    into the detector's 160 px windows)."""
    from wildtrain import env

    folder = tmp_path_factory.mktemp("api-user")
    env.configure(tmp_path_factory.mktemp("settings"))
    yolo_detector(folder / "models/detector")
    species_classifier(folder / "models/classifier")
    (folder / "survey").mkdir()
    Image.fromarray(scene(np.random.default_rng(3), 320, 320)).save(folder / "survey/DJI_0001.png")
    return folder


def test_predict_examples_run_as_written(user, tmp_path):
    out = run_script(examples("Predict with a trained model"), user, tmp_path / "net.log",
                     XDG_CACHE_HOME=str(tmp_path / "cache"))
    lines = out.splitlines()
    assert re.search(r"^\d+ animals in \d+ window\(s\)$", lines[-3] if "does not apply" in lines[-1] else out, re.M)
    boxes = [ln for ln in lines if re.match(r"^(elephant|zebra|antelope|bird) \d\.\d\d at \(", ln)]
    assert int(re.search(r"^(\d+) animals", out, re.M).group(1)) == len(boxes) > 0
    assert re.search(r"^(background|elephant|zebra|antelope|bird) \d\.\d\d$", out, re.M)
    assert "--conf does not apply to a classifier model" in lines[-1]
    assert sorted(p.name for p in user.iterdir()) == ["models", "survey"]  # nothing written beside the models


def test_api_refuses_bad_input_in_one_line(user, tmp_path, monkeypatch):
    from wildtrain import api

    detector = api.load(user / "models/detector", device="cpu")
    with pytest.raises(api.WildtrainError, match=r"images\[1\]: expected an HxWx3 uint8 RGB array, got shape "
                                                 r"\(8, 8\), dtype float64"):
        api.predict(detector, [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8))])
    with pytest.raises(api.WildtrainError, match="--conf 2: must be"):
        api.predict(detector, np.zeros((8, 8, 3), np.uint8), conf=2.0)
    with pytest.raises(api.WildtrainError, match="device: give it to load"):
        api.predict(detector, [], device="cuda")
    with pytest.raises(api.WildtrainError, match="neither a model folder"):
        api.load(user / "survey")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(api.WildtrainError, match="not inside a wildtrain project"):
        api.train("detector")
    assert api.predict(str(user / "models/detector"), []) == []


def test_import_wildtrain_is_cheap_and_the_api_is_reachable_from_it():
    code = ("import sys, wildtrain\n"
            "heavy = [m for m in ('numpy', 'torch', 'mlflow', 'ultralytics', 'typer') if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "from wildtrain import api, tune, evaluate\n"
            "assert wildtrain.load is api.load and wildtrain.predict is api.predict\n"
            "assert wildtrain.train is api.train and wildtrain.register is api.register\n"
            "assert tune.__name__ == 'wildtrain.tune' and evaluate.__name__ == 'wildtrain.evaluate'  # subpackages\n"
            "assert callable(api.tune) and callable(api.evaluate)\n"
            "print(wildtrain.__version__)\n")
    proc = subprocess.run([sys.executable, "-c", code], env=pipeline_env(REPO), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip(), proc.stderr


@pytest.mark.slow
def test_project_examples_run_as_written(pipeline_repo, tmp_path):
    """Train, evaluate and register (detector: v2 of the clone's registry; classifier with one epoch), then tune
    (two one-epoch trials at 64 px), each section's examples as one script in the clone."""
    ws = pipeline_repo.clone(tmp_path / "repo")
    raw = yaml.safe_load((ws.path / "params.yaml").read_text())
    raw["train"].update(epochs=1, imgsz=64)
    raw["register"].update(export=False)  # the exports' parity checks are the fixture's (test_e2e.py), not the API's
    raw["tune"].update(n_trials=2, prune_startup_trials=5)
    (ws.path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))

    out = run_script(examples("Train, evaluate and register a family"), ws.path, tmp_path / "net.log", ws.path)
    assert re.search(r"^mAP50-95 \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]$", out, re.M), out[-3000:]
    assert re.search(r"^models:/wildtrain-detector/2 \[.*'challenger'.*\] ", out, re.M), out[-3000:]
    assert "yolo11n ['elephant'" in out or re.search(r"^\S+ \[", out, re.M), out[-3000:]
    assert re.search(r"^\d\.\d+$", out.strip().splitlines()[-1]), out[-3000:]  # the classifier's f1_macro

    out = run_script(examples("Tune"), ws.path, tmp_path / "net.log", ws.path)
    assert re.search(r"^best of 2 trials: #\d map50_95 \d\.\d{3}$", out, re.M), out[-3000:]
    assert "apply it with: dvc exp run -S" in out, out[-3000:]
