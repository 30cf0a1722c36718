"""The one interface every framework implements, so evaluation and registry never care which made a model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

# (epoch, {metric name: value}) -> None; see tracking.live.EpochLogger.log_epoch
EpochCallback = Callable[[int, dict], None]


@dataclass(frozen=True)
class TrainData:
    """What a trainer may read: the canonical COCO files and the views converted from them."""

    coco: dict[str, Path]  # split -> COCO json
    image_root: Path
    yolo_yaml: Path
    class_names: list[str]
    dataset_hash: str = ""


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path  # the best weights
    epochs_completed: int
    resumed: bool = False
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Detections:
    """One image's predictions: boxes [x, y, w, h] in pixels, class indices into class_names, scores."""

    boxes: list[list[float]]
    classes: list[int]
    scores: list[float]


class DetectorAdapter(Protocol):
    framework: str

    def train(self, cfg, data: TrainData, workdir: Path, on_epoch: EpochCallback) -> TrainResult: ...

    def predict(self, checkpoint: Path, images: list[Path], *, imgsz: int, conf: float, iou: float,
                max_det: int, batch: int, device: str) -> list[Detections]: ...

    def export(self, checkpoint: Path, out_dir: Path, *, imgsz: int) -> list[Path]: ...
