"""Small real model folders, written the way the train stages write them (weights + model.json), built in seconds
without training: a YOLO11n detector and a MobileNetV3-small species classifier. Their predictions are meaningless
but real — the same code paths as a trained model's."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSES = ["elephant", "zebra", "antelope", "bird"]
SIZE = 160


def scene(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    img = rng.integers(60, 200, (h, w, 3), dtype=np.uint8)
    for _ in range(6):  # a few blobs, so the boxes differ from image to image
        y, x = rng.integers(0, h - 20), rng.integers(0, w - 20)
        img[y:y + rng.integers(8, 20), x:x + rng.integers(8, 20)] = rng.integers(0, 255, 3, dtype=np.uint8)
    return img


def yolo_detector(folder: Path, size: int = SIZE) -> Path:
    """A YOLO11n from yolo11n.yaml (random weights, BatchNorm statistics calibrated on a few scenes, class biases
    lifted so that boxes and scores differ from image to image), saved as the train stage saves one (slim
    checkpoint + model.json)."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    from wildtrain.contract import ModelCard, tensors_sha256
    from wildtrain.io import write_torch

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = DetectionModel("yolo11n.yaml", nc=len(CLASSES), verbose=False)
    rng = np.random.default_rng(0)
    calibration = torch.from_numpy(np.stack([scene(rng, size, size) for _ in range(16)]))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # a plain average over the calibration batch
            m.reset_running_stats()
    model.train()
    with torch.no_grad():
        model(calibration.permute(0, 3, 1, 2).float() / 255)
    model.eval()
    for branch in model.model[-1].cv3:
        torch.nn.init.constant_(branch[-1].bias, -3.0)
    model.names = dict(enumerate(CLASSES))
    model.args = {"task": "detect", "imgsz": size, "single_cls": False}  # as yolo.slim_checkpoint writes it
    model.half()
    write_torch(folder / "model.pt", {"model": model, "train_args": model.args})
    ModelCard(family="detector", task="object-detection", framework="yolo", architecture="yolo11n",
              class_names=CLASSES, weights="model.pt",
              input={"size": size, "image_size": size, "overlap": 0.2, "tiling": None, "channels": "RGB",
                     "dtype": "uint8"},
              hashes={"tensors_sha256": tensors_sha256(model.state_dict())},
              extra={"category_ids": [1, 2, 3, 4]}).save(folder)
    return folder


def species_classifier(folder: Path, size: int = 64) -> Path:
    """A MobileNetV3-small species classifier (seeded random weights), saved as the classifier stage saves one."""
    import torch

    from wildtrain.contract import ModelCard, tensors_sha256
    from wildtrain.families.classifier.backbones import build
    from wildtrain.families.classifier.data import MEAN, STD
    from wildtrain.io import write_torch

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    names = ["background", *CLASSES]
    state = build("mobilenet_v3_small", len(names)).state_dict()
    write_torch(folder / "model.pt", state)
    ModelCard(family="classifier", task="classification", framework="lightning", architecture="mobilenet_v3_small",
              class_names=names, weights="model.pt",
              input={"size": size, "channels": "RGB", "dtype": "uint8", "mean": list(MEAN), "std": list(STD)},
              hashes={"tensors_sha256": tensors_sha256(state)}).save(folder)
    return folder
