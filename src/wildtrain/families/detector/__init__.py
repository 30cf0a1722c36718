"""The detector family: Ultralytics YOLO or MMDetection underneath (`train.framework`), one Predictor over both.

Each framework module gives `train(cfg, data, workdir, resume, on_epoch) -> Trained`, a net class
`(model_dir, card, device)` whose `predict(arrays, conf, iou, max_det)` returns Detections, and
`export(model_dir, card, out_dir, images) -> Exported` (with the PyTorch model's output on those held-out
images). Everything else — slicing large images, evaluation, the card — is here, the same for both.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np

from wildtrain.errors import WildtrainError
from wildtrain.contract import Detections, Exported, ModelCard, Trained, TrainData, check_options
from wildtrain.slicing import predict_sliced, slice_size

FRAMEWORKS = ("yolo", "mmdet")
DEFAULT_OVERLAP = 0.2  # slicing of images larger than the training images, when the model was not trained on tiles
PARITY_IMAGES = 8  # held-out images (of the evaluate split) the exports are checked on


def framework(name: str):
    """The framework module (imported only when used: mmdet takes seconds to import)."""
    if name == "yolo":
        from wildtrain.families.detector import yolo

        return yolo
    if name == "mmdet":
        from wildtrain.families.detector import mmdet

        return mmdet
    raise WildtrainError(f"train.framework: unknown framework '{name}' (available: {', '.join(FRAMEWORKS)})")


class DetectorPredictor:
    """Whole images or, when they are larger than what the model was trained on, overlapping slices of them."""

    def __init__(self, card: ModelCard, net):
        self.card, self.net = card, net

    def options(self) -> dict:
        return {"conf": 0.25, "iou": 0.7, "max_det": 300, "slice": "auto",
                "overlap": float(self.card.input.get("overlap", DEFAULT_OVERLAP)), "merge_ios": 0.5, "batch": 16,
                "precision": "fp32"}

    def predict(self, images: Sequence[np.ndarray], **options) -> list[Detections]:
        o = check_options(options, self.options(), "detector predict")
        train_size = int(self.card.input.get("image_size") or self.card.input["size"])
        try:
            slice_size(o["slice"], (0, 0), train_size)  # a bad option is refused even with no image
            sizes = [slice_size(o["slice"], im.shape, train_size) for im in images]
        except ValueError as e:
            raise WildtrainError(str(e)) from None
        conf, iou, max_det = float(o["conf"]), float(o["iou"]), int(o["max_det"])
        if max_det < 1 or max_det != float(o["max_det"]):
            raise WildtrainError(f"max_det: expected a whole number of boxes per window (>= 1), got {o['max_det']}")
        if not 0 < float(o["merge_ios"]) <= 1:
            raise WildtrainError(f"merge_ios: expected a fraction in (0, 1], got {o['merge_ios']}")
        precision = str(o["precision"]).strip().lower()
        supported = getattr(self.net, "PRECISIONS", ("fp32",))
        if precision not in supported:
            raise WildtrainError(f"precision: expected {' or '.join(supported)} for a {self.card.framework} detector, "
                                 f"got '{o['precision']}'")
        fast = {"precision": precision} if precision != "fp32" else {}
        return predict_sliced(lambda arrays: self.net.predict(arrays, conf=conf, iou=iou, max_det=max_det, **fast),
                              images, sizes, overlap=float(o["overlap"]), merge_ios=float(o["merge_ios"]),
                              max_det=max_det, batch=int(o["batch"]))


class DetectorFamily:
    name, task = "detector", "object-detection"
    train_section, evaluate_section, register_section = "train", "evaluate", "register"
    suffix = ""  # metrics/eval.json, metrics/register.json, metrics/train/
    requirements = ()  # served-model packages beyond the framework's
    plot_files = ("pr_curve.png", "confusion.png", "gallery.png")  # in Paths.plots, logged with the model

    def model_dir(self, p, root: Path) -> Path:
        return root / p.paths.models

    def train(self, cfg, data: TrainData, workdir: Path, resume: bool, on_epoch) -> Trained:
        if not data.coco["train"].is_file():
            raise WildtrainError(f"{data.coco['train']}: not found; the detector trains on convert's output "
                                 f"(dvc repro convert)")
        if getattr(cfg, "phases", None) and cfg.framework != "yolo":
            raise WildtrainError(f"train.phases: training in phases is for framework yolo only (framework is "
                                 f"{cfg.framework}): set phases: []")
        if getattr(cfg, "phases", None):  # train.phases: several YOLO trainings in a row
            from wildtrain.families.detector import phases

            trained = phases.train(cfg, data, workdir, resume, on_epoch)
        else:
            trained = framework(cfg.framework).train(cfg, data, workdir, resume, on_epoch)
        overlap = data.tiling["overlap"] if data.tiling else DEFAULT_OVERLAP
        return dataclasses.replace(
            trained, input={**trained.input, "image_size": data.image_size, "overlap": overlap, "tiling": data.tiling,
                            "channels": "RGB", "dtype": "uint8"},
            extra={**trained.extra, "category_ids": data.category_ids})

    def load(self, model_dir: Path, device: str = "auto") -> DetectorPredictor:
        card = ModelCard.load(model_dir)
        return DetectorPredictor(card, framework(card.framework).NET(model_dir, card, device))

    def table_type(self):
        from wildtrain.evaluate.detection_table import DetectionTable

        return DetectionTable

    def evaluate(self, predictor, p, root: Path, write_outputs: bool) -> tuple:
        from wildtrain.evaluate.detection import evaluate_detector

        return evaluate_detector(predictor, p, root, "" if write_outputs else None)

    def lineage(self, p, root: Path) -> dict[str, str]:
        return {}

    def export(self, model_dir: Path, out_dir: Path, p, root: Path) -> Exported:
        card = ModelCard.load(model_dir)
        return framework(card.framework).export(model_dir, card, out_dir, parity_images(p, root))


def parity_images(p, root: Path) -> list[np.ndarray]:
    """The first PARITY_IMAGES full images of the split the detector is evaluated on (real, held out)."""
    from wildtrain.data.images import load_rgb
    from wildtrain.evaluate.detection import test_split
    from wildtrain.layout import image_root

    coco_file, ds, _ = test_split(p, root)
    if not ds.images:
        raise WildtrainError(f"{coco_file}: no images to check the exports on")
    folder = image_root(coco_file, ds.info)
    return [load_rgb(folder / im["file_name"]) for im in ds.images[:PARITY_IMAGES]]


FAMILY = DetectorFamily()
