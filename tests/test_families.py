"""The model-family interface without training: the card, options, tensor hashes, the detector's slicing policy
and the two-stage model's relabelling (each with small in-memory parts)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wildtrain.errors import WildtrainError
from wildtrain.families import FAMILIES, get
from wildtrain.contract import Classification, Detections, ModelCard, check_options, tensors_sha256
from wildtrain.families.detector import DetectorPredictor
from wildtrain.families.two_stage import TwoStagePredictor


def card(**kw) -> ModelCard:
    base = dict(family="detector", task="object-detection", framework="yolo", architecture="yolo11n",
                class_names=["zebra", "bird"], weights="model.pt", input={"size": 64, "image_size": 100})
    return ModelCard(**{**base, **kw})


def test_card_round_trip_and_refusals(tmp_path):
    c = card(training={"mlflow_run_id": "r"}, hashes={"tensors_sha256": "t"})
    c.save(tmp_path)
    assert ModelCard.load(tmp_path) == c
    (tmp_path / "model.json").write_text(json.dumps({"framework": "yolo"}))
    with pytest.raises(WildtrainError, match="not a wildtrain model card"):
        ModelCard.load(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps({"schema": 1, "family": "detector"}))
    with pytest.raises(WildtrainError, match="model card lacks class_names, framework"):
        ModelCard.load(tmp_path)
    with pytest.raises(WildtrainError, match="model card not found"):
        ModelCard.load(tmp_path / "nothing")


def test_every_family_is_found_by_name_and_an_unknown_one_is_one_line():
    assert [get(name).name for name in FAMILIES] == list(FAMILIES)
    with pytest.raises(WildtrainError, match="unknown model family 'panoptic'"):
        get("panoptic")


def test_options_and_tensor_hashes():
    import torch

    assert check_options({"conf": 0.5, "iou": None}, {"conf": 0.25, "iou": 0.7}, "x") == {"conf": 0.5, "iou": 0.7}
    with pytest.raises(WildtrainError, match="unknown option 'cnf'"):
        check_options({"cnf": 0.5}, {"conf": 0.25}, "x")
    state = {"w": torch.randn(3, 4), "flag": torch.zeros(2, dtype=torch.bool)}
    assert tensors_sha256(state) == tensors_sha256({k: v.clone() for k, v in state.items()})
    bumped = {**state, "w": state["w"].clone()}
    bumped["w"][0, 0] = torch.nextafter(bumped["w"][0, 0], torch.tensor(1e9))  # one ulp
    assert tensors_sha256(bumped) != tensors_sha256(state)


class RecordingNet:
    """A network stand-in that finds one box in the middle of whatever it is given, and records the shapes."""

    def __init__(self):
        self.seen = []

    def predict(self, images, *, conf, iou, max_det):
        self.seen.append([im.shape[:2] for im in images])
        return [Detections([[im.shape[1] / 2 - 2, im.shape[0] / 2 - 2, 4, 4]], [0], [0.9]) for im in images]


def test_detector_slices_only_images_larger_than_it_was_trained_on():
    net = RecordingNet()
    predictor = DetectorPredictor(card(), net)
    small, large = np.zeros((100, 100, 3), np.uint8), np.zeros((300, 200, 3), np.uint8)
    out = predictor.predict([small, large], overlap=0.0)  # auto: 300 > 1.25 x 100 -> 100 px windows
    assert net.seen == [[(100, 100)] + [(100, 100)] * 6]  # the small image whole, the large one as 2 x 3 windows
    assert len(out[0].boxes) == 1 and len(out[1].boxes) == 6
    predictor.predict([large], slice="off")
    assert net.seen[-1] == [(300, 200)]
    with pytest.raises(WildtrainError, match="slice: expected auto, off or a size"):
        predictor.predict([large], slice="tiny")
    with pytest.raises(WildtrainError, match="unknown option 'treshold'"):
        predictor.predict([large], treshold=0.5)


class FixedDetector:
    card = card()

    def options(self):
        return {"conf": 0.25}

    def predict(self, images, **options):
        return [Detections([[10, 10, 20, 20], [60, 60, 10, 10], [0, 0, 4, 4]], [0, 0, 1], [0.9, 0.8, 0.5])
                for _ in images]


class ColourClassifier:
    """Names a crop by its mean colour: red 'bird', green 'zebra', else 'background'; records crop shapes."""

    card = card(family="classifier", class_names=["background", "bird", "zebra"])

    def __init__(self):
        self.crops = []

    def predict(self, crops, batch=64):
        self.crops += [c.shape[:2] for c in crops]
        out = []
        for c in crops:
            r, g, _ = c.reshape(-1, 3).mean(0)
            label = 1 if r > 100 else 2 if g > 100 else 0
            out.append(Classification([0.6 if k == label else 0.2 for k in range(3)]))
        return out


def test_two_stage_relabels_by_the_classifier_and_drops_background():
    image = np.zeros((100, 100, 3), np.uint8)
    image[8:32, 8:32] = (200, 0, 0)  # the first box (zebra to the detector) is red: a bird
    image[58:72, 58:72] = (0, 200, 0)  # the second is green: a zebra
    classifier = ColourClassifier()
    classifier.card = card(family="classifier", class_names=["background", "bird", "zebra"],
                           input={"size": 32, "crop": {"padding": 0.0, "min_size": 16}})
    two = TwoStagePredictor(card(family="two_stage"), FixedDetector(), classifier)
    (det,) = two.predict([image])
    assert classifier.crops == [(20, 20), (16, 16), (10, 10)]  # cut like convert's crops: min_size 16, clipped
    assert det.classes == [1, 0] and det.boxes == [[10, 10, 20, 20], [60, 60, 10, 10]]  # bird, zebra; 3rd dropped
    assert det.scores == pytest.approx([0.9 * 0.6, 0.8 * 0.6])
