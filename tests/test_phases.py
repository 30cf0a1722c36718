"""train.phases (the YOLO detector): each phase starts from the previous phase's best weights, sees the images its
empty_ratio selects (deterministic by seed) plus the hard negatives the previous phase mined, all in one MLflow
run with epochs numbered on; a training interrupted in phase 2 resumes there without retraining phase 1.

Tiny: 16 synthetic 96 px scenes (6 without boxes; 10 train images), 1-2 epochs per phase at imgsz 64."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from wildtrain.families.detector import phases as ph
from wildtrain.params import Params, _build, _check_values

pytestmark = pytest.mark.slow

TRAIN = {"epochs": 1, "imgsz": 64, "batch": 4, "workers": 0, "device": "cpu", "close_mosaic": 0, "warmup_epochs": 0.0,
         "mosaic": 0.0}


def params(phases: list[dict], **train) -> Params:
    p = _build(Params, {"data": {"synthetic": {"num_images": 16, "image_size": 96, "max_objects": 3,
                                               "empty_fraction": 0.4}},
                        "convert": {"val_fraction": 0.2, "test_fraction": 0.2, "crops": {"enabled": False}},
                        "train": {**TRAIN, **train, "phases": phases}}, "", "test")
    _check_values(p, "test")
    return p


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The dataset through the real prepare and convert stages."""
    from wildtrain import env
    from wildtrain.pipeline.convert import convert
    from wildtrain.pipeline.prepare import prepare
    from wildtrain.pipeline.train import train_data

    root = tmp_path_factory.mktemp("phases")
    env.configure(root)
    p = params([])
    prepare(p, root)
    convert(p, root)
    return root, train_data(p, root)


PHASES = [{"epochs": 1, "freeze": 10, "empty_ratio": 0.0, "mine": {"score": 0.001}},
          {"epochs": 1, "empty_ratio": 0.0, "lr0": 0.002}]


@pytest.fixture(scope="module")
def staged(tiny, tmp_path_factory):
    """Two phases through the train stage's own function (MLflow in a sqlite store of the test's root)."""
    from wildtrain.pipeline.train import train

    root, _ = tiny
    p = params(PHASES)
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        mp.chdir(root)  # MLflow's sqlite store puts artifacts in ./mlruns
        card = train(p, root, "detector")
    return root, p, card, out.getvalue()


def listed(folder: Path) -> list[str]:
    return [Path(line).name for line in (folder / "train.txt").read_text().splitlines()]


def test_empty_images_selected_by_ratio_deterministically_by_seed(tiny):
    from ultralytics.data.utils import img2label_paths

    root, data = tiny
    images = ph.train_images(data, seed=0)
    assert len(images.positives) >= 3 and len(images.empties) >= 3
    assert all(Path(f).read_text().strip() for f in img2label_paths([str(x) for x in images.positives]))
    assert not any(Path(f).read_text().strip() for f in img2label_paths([str(x) for x in images.empties]))
    assert ph.phase_images(images, 0.0) == images.positives  # no empty image
    assert sorted(ph.phase_images(images, 1.0)) == sorted(images.positives + images.empties)  # all
    half = ph.select_empty(images, 0.5)
    assert len(half) == round(len(images.empties) / 2) and half == ph.select_empty(ph.train_images(data, 0), 0.5)
    assert half == ph.select_empty(images, 0.8)[:len(half)]  # a larger ratio adds to a smaller one's images
    assert any(ph.train_images(data, s).empties != images.empties for s in (1, 2, 3))  # the seed decides
    extra = images.empties[-1]
    assert ph.phase_images(images, 1.0, [extra]).count(extra) == 1  # a mined negative is listed once

    listing = ph.write_phase_dataset(root / "listing", data, ph.phase_images(images, 0.0, [extra]))
    from ultralytics.data.utils import check_det_dataset

    yaml = check_det_dataset(str(listing))  # Ultralytics reads it: train a txt list, val/test the pipeline's
    assert Path(yaml["train"]).read_text().splitlines() == [str(x) for x in images.positives + [extra]]
    assert Path(yaml["val"]) == data.yolo_yaml.parent / "images" / "val"


def test_each_phase_starts_from_the_previous_phases_best_weights(staged):
    import torch

    from wildtrain.contract import tensors_sha256

    root, p, card, _ = staged
    work = root / "runs/detector"
    # our own files, as Ultralytics leaves them at the end of a training: its EMA weights in half, as "model"
    best1 = torch.load(work / "phase1/weights/best.pt", map_location="cpu", weights_only=False)
    records = card["extra"]["phases"]
    assert [r["phase"] for r in records] == [1, 2] and card["training"]["epochs_completed"] == 2
    assert records[1]["start_tensors_sha256"] == tensors_sha256(best1["model"].state_dict())
    assert records[0]["start_tensors_sha256"] != records[1]["start_tensors_sha256"]
    final = torch.load(work / "phase2/weights/best.pt", map_location="cpu", weights_only=False)
    assert card["hashes"]["tensors_sha256"] == tensors_sha256(final["model"].state_dict())  # the model: phase 2's
    import yaml

    args = [yaml.safe_load((work / f"phase{n}/args.yaml").read_text()) for n in (1, 2)]
    assert args[0]["freeze"] == 10 and args[1]["freeze"] is None  # a phase's own keys, else train's
    assert args[0]["lr0"] == p.train.lr0 and args[1]["lr0"] == 0.002


def test_phase_images_and_mined_negatives(staged, tiny):
    from wildtrain.contract import ModelCard
    from wildtrain.families.detector.yolo import YoloNet

    root, _, card, _ = staged
    _, data = tiny
    work = root / "runs/detector"
    images = ph.train_images(data, seed=0)
    positives = [x.name for x in images.positives]
    assert listed(work / "phase1") == positives  # empty_ratio 0: no empty image
    mined = json.loads((work / "phase1/mined.json").read_text())
    assert mined["candidates"] == len(images.empties)  # phase 2 (ratio 0) would include none of them
    assert listed(work / "phase2") == positives + mined["mined"]
    assert card["extra"]["phases"][0]["mining"]["mined_images"] == mined["mined"]
    assert card["extra"]["phases"][1]["negatives_added"] == len(mined["mined"])

    # mined = exactly the empty images where phase 1's best weights detect anything at >= score
    net = YoloNet(work / "phase1/mining", ModelCard(family="detector", task="object-detection", framework="yolo",
                                                    architecture="", class_names=data.class_names,
                                                    weights="model.pt", input={"size": 64}), "cpu")
    from wildtrain.data.images import load_rgb

    top = {x.name: max(d.scores, default=0.0) for x, d in
           zip(images.empties, net.predict([load_rgb(x) for x in images.empties], conf=1e-6, iou=0.7, max_det=1))}
    assert mined["mined"] == [n for n in top if top[n] >= 0.001]  # (a 1-epoch model fires on every one)
    # a model whose scores differ from image to image: a threshold between them mines those above it, only those
    candidates = images.empties + images.positives  # (positives stand in for empty ground the model fires on)
    net = scoring_net(root / "scoring", [load_rgb(x) for x in candidates], data.class_names)
    top = [max(d.scores, default=0.0) for d in
           net.predict([load_rgb(x) for x in candidates], conf=1e-6, iou=0.7, max_det=1)]
    scores = sorted(set(top))
    assert len(scores) >= 4, top
    cut = (scores[len(scores) // 2 - 1] + scores[len(scores) // 2]) / 2
    got = ph.hard_negatives(net, candidates, cut, batch=3)
    assert got == [x for x, s in zip(candidates, top) if s >= cut] and 0 < len(got) < len(candidates)


def scoring_net(folder: Path, arrays: list, class_names: list[str]):
    """A YoloNet on a YOLO11n with random weights whose BatchNorm statistics are calibrated on `arrays` and class
    biases lifted (as tests/test_yolo_predict.py): its scores depend on the image."""
    import numpy as np
    import torch
    from ultralytics.nn.tasks import DetectionModel

    from wildtrain.contract import ModelCard
    from wildtrain.families.detector.yolo import YoloNet
    from wildtrain.io import write_torch

    torch.manual_seed(0)
    model = DetectionModel("yolo11n.yaml", nc=len(class_names), verbose=False)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
            m.reset_running_stats()
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255)
    model.eval()
    for branch in model.model[-1].cv3:
        torch.nn.init.constant_(branch[-1].bias, -3.0)
    model.names = dict(enumerate(class_names))
    model.args = {"task": "detect", "imgsz": 96, "single_cls": False}
    write_torch(folder / "model.pt", {"model": model, "train_args": model.args})
    card = ModelCard(family="detector", task="object-detection", framework="yolo", architecture="yolo11n",
                     class_names=class_names, weights="model.pt", input={"size": 96})
    return YoloNet(folder, card, "cpu")


def test_one_mlflow_run_numbers_epochs_on_across_phases(staged):
    from mlflow.tracking import MlflowClient

    root, _, card, stdout = staged
    assert "phase 1/2 epoch 1/1" in stdout and "phase 2/2 epoch 1/1" in stdout
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    run_id = card["training"]["mlflow_run_id"]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "phase")] == [(0, 1.0), (1, 2.0)]
    assert [m.step for m in client.get_metric_history(run_id, "train/box_loss")] == [0, 1]
    mined = json.loads((root / "runs/detector/phase1/mined.json").read_text())["mined"]
    assert client.get_run(run_id).data.metrics["phase1_mined"] == len(mined)
    assert client.get_run(run_id).data.params["train.phases.0.freeze"] == "10"
    assert [a.path for a in client.list_artifacts(run_id, "phases/phase1")] == ["phases/phase1/mined.json"]
    live = json.loads((root / "metrics/train/metrics.json").read_text())
    assert live["step"] == 1 and live["phase"] == 2


class Crash(Exception):
    pass


def test_resume_continues_in_the_interrupted_phase(tiny, tmp_path, capsys):
    root, data = tiny
    p = params([{"epochs": 1, "empty_ratio": 0.0}, {"epochs": 2, "empty_ratio": 1.0}])
    work = tmp_path / "detector"
    seen: list[tuple[int, int]] = []

    def crash_in_phase_2(epoch, metrics):
        seen.append((epoch, metrics["phase"]))
        if metrics["phase"] == 2:
            raise Crash

    with pytest.raises(Crash):
        ph.train(p.train, data, work, False, crash_in_phase_2)
    assert seen == [(0, 1), (1, 2)]
    assert [r["phase"] for r in json.loads((work / ph.STATE).read_text())["phases"]] == [1]
    best1 = (work / "phase1/weights/best.pt").stat().st_mtime_ns
    assert len(listed(work / "phase2")) == len(ph.train_images(data, 0).positives + ph.train_images(data, 0).empties)

    seen.clear()
    capsys.readouterr()
    trained = ph.train(p.train, data, work, True, lambda e, m: seen.append((e, m["phase"])))
    out = capsys.readouterr().out
    assert "phase 1/2 was trained before" in out and f"resuming from {work / 'phase2/weights/last.pt'}" in out
    assert seen == [(2, 2)]  # phase 1 not retrained; phase 2 goes on from its second epoch (the 3rd overall)
    assert (work / "phase1/weights/best.pt").stat().st_mtime_ns == best1
    assert trained.resumed and trained.epochs_completed == 3
    assert [r["resumed"] for r in trained.extra["phases"]] == [False, True]
