"""The one interface every model family implements, so predict, serve, evaluation and the registry never care
which family or framework made a model.

A trained model is a folder: `model.json` (a ModelCard) and the files it names. A family
- trains: canonical data -> files for such a folder (`Trained`), resuming from its own checkpoints;
- loads: a folder -> a Predictor that holds the weights (loaded once) and predicts on RGB arrays;
- evaluates: a Predictor + the held-out split -> metrics (the same code scores every framework);
- exports: a folder -> portable files (ONNX, TorchScript) with what they take and give (`Exported`), and
  PyTorch's own output on real held-out images, which publishing checks every export against.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from wildtrain.errors import WildtrainError
from wildtrain.io import read_json, write_json
from wildtrain.layout import MODEL_CARD

# (epoch, {metric name: value}) -> None: per-epoch metrics go to dvclive + MLflow (tracking.live), and tune's pruner
EpochCallback = Callable[[int, dict], None]
CARD_SCHEMA = 1


@dataclass(frozen=True)
class TrainData:
    """What a trainer may read. Paths are absolute; `root` resolves relative paths in params (weights files)."""

    root: Path
    coco: dict[str, Path]  # split -> canonical COCO file (tiles when tiling)
    image_root: Path
    yolo_yaml: Path
    crops: Path
    class_names: list[str]
    category_ids: list[int]
    dataset_hash: str
    source: str = "unknown"  # data.source that prepare read
    source_md5: str = "none"  # its DVC hash (from its .dvc file; "none" when DVC does not version it)
    tiling: dict | None = None  # {"size", "overlap"} when the detector trains on tiles
    image_size: int = 0  # long side (px) of a typical training image or tile: predict slices large images to this
    crops_plan: Path | None = None  # showings per epoch of each training crop (rebalance_crops); None: each once
    stream: bool = False  # data.stream: train from convert's shards (data/crops/shards, data/coco/shards)
    stream_buffer: int = 1000  # data.stream_buffer: the streaming loaders' shuffle buffer, in samples


@dataclass(frozen=True)
class Trained:
    """A family's training result: files for the model folder and what its card says beyond the common fields."""

    files: dict[str, Path]  # name in the model folder -> file written by the trainer
    weights: str  # the main weights file among `files`
    architecture: str
    framework: str
    input: dict  # what a caller must know to feed the model (size, normalization, slicing, crops)
    epochs_completed: int
    resumed: bool
    tensors_sha256: str  # what must be identical on a rerun (file bytes may carry dates)
    class_names: list[str] | None = None  # when not the dataset's (the classifier adds `background`)
    extra: dict = field(default_factory=dict)  # framework-specific (best fitness, mmdet model ...)


@dataclass(frozen=True)
class ModelCard:
    """model.json: the one schema for every trained model, whatever family or framework made it."""

    family: str  # detector | classifier | two_stage | segmenter | yoloseg
    task: str  # object-detection | classification | semantic-segmentation | instance-segmentation
    framework: str  # yolo | mmdet | lightning | composite
    architecture: str
    class_names: list[str]
    weights: str  # file name in the folder ("" for a composite model)
    input: dict
    training: dict = field(default_factory=dict)  # epochs, resumed, MLflow run, dataset/source hashes, repro facts
    hashes: dict = field(default_factory=dict)  # sha256 of the weights file, and of its tensors (file bytes may
    # carry dates; tensors are what must be identical on a rerun)
    components: dict = field(default_factory=dict)  # two_stage: role -> sub-folder
    extra: dict = field(default_factory=dict)
    schema: int = CARD_SCHEMA

    def save(self, folder: Path) -> None:
        write_json(folder / MODEL_CARD, dataclasses.asdict(self))

    @classmethod
    def load(cls, folder: Path) -> "ModelCard":
        path = Path(folder) / MODEL_CARD
        raw = read_json(path, "model card")
        if not isinstance(raw, dict) or raw.get("schema") != CARD_SCHEMA:
            raise WildtrainError(f"{path}: not a wildtrain model card (schema {CARD_SCHEMA})")
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(n for n in ("family", "task", "framework", "class_names", "weights", "input") if n not in raw)
        if missing:
            raise WildtrainError(f"{path}: model card lacks {', '.join(missing)}")
        return cls(**{k: v for k, v in raw.items() if k in names})


@dataclass(frozen=True)
class ExportIO:
    """What an exported model takes and gives, so it can be run, checked and described without wildtrain (the
    DLPK's inference function, the STAC item's mlm:input/mlm:output, the parity check)."""

    size: int  # square input side in px
    resize: str  # "letterbox": long side to `size`, aspect kept, padded with 114 (YOLO) | "stretch": to size x size
    mean: tuple[float, ...] | None  # per channel, on 0..1 values; None: the input is only divided by 255
    std: tuple[float, ...] | None
    output: str  # how to read the output: "yolo" [N, 4 + classes, anchors] (cx, cy, w, h in input px, then class
    # scores) | "logits" [N, classes] | "segmentation" [N, classes, H, W] (per-pixel class logits) | "yolo-seg"
    # [N, 4 + classes + 32, anchors] (as "yolo", then 32 mask coefficients; a second output holds the prototypes)
    output_dims: tuple[str, ...]
    output_shape: tuple[int, ...]  # -1 where it varies (batch, anchors)
    classes: tuple[str, ...]  # what each output class index means
    input_name: str = "images"
    output_name: str = "output0"


@dataclass(frozen=True)
class Exported:
    """A family's portable copies of one model (`Family.export`). Publishing (wildtrain.publish) checks "onnx" and
    "torchscript" against `reference`, and describes and packages them from `io` alone, whatever the family."""

    files: dict[str, Path] = field(default_factory=dict)  # "onnx", "torchscript", and any other portable file
    io: ExportIO | None = None  # None when nothing runnable was exported
    reference: tuple[np.ndarray, np.ndarray] | None = None  # (inputs, PyTorch's outputs): real held-out images,
    # preprocessed as `io` says, float32 [N, 3, size, size], and what the PyTorch model gives on exactly them
    total_parameters: int | None = None
    unavailable: dict[str, str] = field(default_factory=dict)  # format -> why this framework cannot export it
    parts: dict[str, "Exported"] = field(default_factory=dict)  # a composite model's parts, by role


@dataclass(frozen=True)
class Detections:
    """One image's detections: boxes [x, y, w, h] in pixels of the image given, class indices into the card's
    class_names, scores. `windows`: the model's forward passes behind them (slices of a large image); `capped`:
    how many of those returned max_det boxes, so that animals may have been left out — a census must say so."""

    boxes: list[list[float]]
    classes: list[int]
    scores: list[float]
    windows: int = 1
    capped: int = 0


@dataclass(frozen=True)
class Instances(Detections):
    """One image's instances: Detections (boxes, classes, scores), and each instance's outline as COCO polygons
    [[x1, y1, x2, y2, ...], ...] in pixels of the image given (a mask of several blobs has several)."""

    polygons: list[list[list[float]]] = field(default_factory=list)


@dataclass(frozen=True)
class Classification:
    """One image's class probabilities, in the card's class order."""

    scores: list[float]

    @property
    def label(self) -> int:
        return int(np.argmax(self.scores))


# Colours of class maps (class k: PALETTE[k % 16]; 0, the background, black): mask PNGs, overlays, plots.
PALETTE = ((0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
           (170, 110, 40), (255, 250, 200), (128, 0, 0))


@dataclass(frozen=True)
class Segmentation:
    """One image's class map: HxW uint8 in pixels of the image given, values index the card's class_names
    (0 is the background)."""

    mask: np.ndarray

    def areas(self, num_classes: int) -> list[int]:
        """Pixels of each class."""
        return np.bincount(self.mask.ravel(), minlength=num_classes)[:num_classes].tolist()

    def png(self) -> bytes:
        """A palette PNG: pixel values are the class indices, viewers show PALETTE's colours."""
        import io

        from PIL import Image

        img = Image.fromarray(self.mask, "L").convert("P")
        img.putpalette([v for k in range(256) for v in PALETTE[k % len(PALETTE)]])
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue()


class Predictor(Protocol):
    """Weights loaded once; predicts on a batch of HxWx3 uint8 RGB arrays (files, archives, slices and HTTP
    bodies are all turned into arrays first). `options` are the family's predict-time settings."""

    card: ModelCard

    def options(self) -> dict[str, Any]: ...  # name -> default (the served model's signature params)

    def predict(self, images: Sequence[np.ndarray], **options) -> list: ...


class Family(Protocol):
    name: str
    task: str
    train_section: str  # params.yaml section of each stage kind
    evaluate_section: str
    register_section: str
    suffix: str  # of its metrics files: metrics/eval{suffix}.json, register{suffix}.json, train{suffix}/
    plot_files: tuple[str, ...]  # in Paths.plots, logged with the registered model
    requirements: tuple[str, ...]  # requirements.txt packages ("name==") its served model needs beyond its framework's

    def model_dir(self, p, root: Path) -> Path: ...  # the pipeline's model folder (two_stage composes it)

    # None in the extra processes of a distributed training; on_epoch is None there
    def train(self, cfg, data: TrainData, workdir: Path, resume: bool, on_epoch: EpochCallback | None
              ) -> Trained | None: ...

    def load(self, model_dir: Path, device: str = "auto") -> Predictor: ...

    # (metrics with 95% intervals and an `evaluation_hash` saying what they compare with, the per-unit table they
    # were resampled from: wildtrain.evaluate.bootstrap); plots and predictions when write_outputs
    def evaluate(self, predictor: Predictor, p, root: Path, write_outputs: bool) -> tuple[dict, Any]: ...

    def table_type(self) -> type: ...  # the class of its evaluate's table (loads a saved one)

    # portable copies in out_dir + PyTorch's output on real held-out images (publishing checks and describes them)
    def export(self, model_dir: Path, out_dir: Path, p, root: Path) -> Exported: ...

    def lineage(self, p, root: Path) -> dict[str, str]: ...  # extra tags of a registered version


def tensors_sha256(state_dict: dict) -> str:
    """One hash over a state dict's names, dtypes, shapes and values: equal iff the weights are bit-identical."""
    import torch

    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name]
        if isinstance(t, torch.Tensor):
            t = t.detach().cpu().contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        else:
            h.update(f"{name}|{t!r}|".encode())
    return h.hexdigest()


def check_options(given: dict, defaults: dict, where: str) -> dict:
    """Predict-time options merged over the defaults; an unknown name is one clear line."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise WildtrainError(f"{where}: unknown option '{unknown[0]}' (known: {', '.join(sorted(defaults))})")
    return {**defaults, **{k: v for k, v in given.items() if v is not None}}
