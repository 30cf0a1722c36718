"""Typed params sections, validated once: a misspelled key or a wrong type is one clear line.

Each stage reads only its own section(s) of params.yaml; these dataclasses are the reference
(docs/reference/params.md) and the defaults.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from wildtrain.errors import WildtrainError
from wildtrain.io import read_yaml, write_yaml
from wildtrain.layout import Paths

PARAMS_FILE = "params.yaml"


@dataclass(frozen=True)
class Synthetic:
    num_images: int = 170
    image_size: int = 320
    max_objects: int = 8
    empty_fraction: float = 0.1


@dataclass(frozen=True)
class MaskPairs:
    """Image/mask folder pairs (data.format masks): the mask folder, the class list (line k = pixel value k,
    line 0 the background) and the value of unlabelled pixels."""

    folder: str = "masks"
    classes: str = "classes.txt"
    ignore: int = 255


@dataclass(frozen=True)
class Data:
    source: str = "synthetic"
    format: Literal["auto", "coco", "voc", "yolo", "csv", "masks", "label_studio"] = "auto"
    annotations: str = "annotations.json"
    images: str = "images"
    invalid_boxes: Literal["clip", "drop", "fail"] = "clip"
    unannotated: Literal["negative", "skip"] = "skip"  # images no annotation file mentions (docs/reference/data.md)
    group_regex: str = ""
    seed: int = 0
    stream: bool = False  # classifier + segmenter train from convert's WebDataset shards (docs/explanation/streaming.md)
    stream_buffer: int = 1000  # shuffle buffer of the streaming loaders, in samples (per DataLoader worker)
    synthetic: Synthetic = field(default_factory=Synthetic)
    masks: MaskPairs = field(default_factory=MaskPairs)


@dataclass(frozen=True)
class Crops:
    enabled: bool = True
    padding: float = 0.15
    min_size: int = 16
    background_per_image: int = 1


@dataclass(frozen=True)
class Tile:
    size: int = 0  # px; 0 = no tiling
    overlap: float = 0.2
    min_visibility: float = 0.5
    empty_ratio: float = 0.1


@dataclass(frozen=True)
class Convert:
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.4
    crops: Crops = field(default_factory=Crops)
    tile: Tile = field(default_factory=Tile)
    shards: bool = False


@dataclass(frozen=True)
class Mmdet:
    """train.framework: mmdet. The other train keys (epochs, imgsz, batch, seed, device, ...) apply too."""

    model: str = "retinanet_r18"  # a name from wildtrain.families.detector.mmdet.MODELS, or your own mmdet config .py
    weights: str = ""  # a local checkpoint to start from (mmdet load_from); empty: from scratch
    lr: float = 0.0  # 0: the model config's own learning rate, scaled to train.batch
    optimizer: str = "auto"  # auto: the model config's optimizer; or SGD, Adam, AdamW (with train.lr0 etc.)


@dataclass(frozen=True)
class Mine:
    """Hard-negative mining after a phase (train.phases[k].mine): the phase's best weights predict the empty
    training images the next phase would not include; those with a detection at >= score join it as negatives."""

    score: float = 0.3


@dataclass(frozen=True)
class Phase:
    """One entry of train.phases: keys left out (None) take train's own value, not the previous phase's."""

    epochs: int | None = None
    lr0: float | None = None
    lrf: float | None = None
    freeze: int | None = None  # Ultralytics' freeze: the first N layers of the model
    imgsz: int | None = None
    mosaic: float | None = None
    close_mosaic: int | None = None
    batch: int | None = None
    optimizer: str | None = None
    warmup_epochs: float | None = None
    empty_ratio: float = 1.0  # fraction of the empty training images (no boxes) included; images with boxes: all
    mine: Mine | None = None  # hard negatives for the next phase (not allowed on the last phase)


Backbone = Literal["resnet18", "resnet34", "resnet50", "efficientnet_b0", "mobilenet_v3_small", "mobilenet_v3_large",
                   "vit_b_16"]  # torchvision backbones of the classifier (families/classifier/backbones.py)


@dataclass(frozen=True)
class Train:
    framework: Literal["yolo", "mmdet"] = "yolo"
    model: str = "yolo11n.yaml"
    epochs: int = 40
    imgsz: int = 320
    batch: int = 16
    lr0: float = 0.01
    lrf: float = 0.01
    momentum: float = 0.937
    weight_decay: float = 0.0005
    warmup_epochs: float = 3.0
    optimizer: str = "auto"
    cos_lr: bool = False
    seed: int = 0
    deterministic: bool = True
    patience: int = 100
    device: str = "auto"
    workers: int = 2
    amp: bool = True
    cache: bool = False
    mosaic: float = 1.0
    close_mosaic: int = 10
    fliplr: float = 0.5
    flipud: float = 0.5
    degrees: float = 0.0
    scale: float = 0.5
    resume: Literal["auto", "never"] = "auto"
    plots: bool = False
    mmdet: Mmdet = field(default_factory=Mmdet)
    phases: list[Phase] = field(default_factory=list)  # framework yolo: docs/how-to/phases-and-hard-negatives.md


@dataclass(frozen=True)
class Bootstrap:
    """95% intervals of the evaluation metrics: resamples of the test units (images, or the groups the split keeps
    together), seeded; the register gate's paired test uses the same settings."""

    resamples: int = 1000
    seed: int = 0


@dataclass(frozen=True)
class Evaluate:
    split: str = "test"
    device: str = "auto"
    conf: float = 0.001
    iou: float = 0.7
    max_det: int = 100
    batch: int = 16
    confusion_conf: float = 0.25
    confusion_iou: float = 0.5
    merge_ios: float = 0.5
    bootstrap: Bootstrap = field(default_factory=Bootstrap)


@dataclass(frozen=True)
class Tracking:
    experiment: str = "wildtrain"


@dataclass(frozen=True)
class Register:
    model_name: str = "wildtrain-detector"
    gate_metric: str = "map50_95"
    export: bool = True  # ONNX + TorchScript, parity-checked (mmdet models export only through mmdeploy)
    gate_margin: float = 0.0  # champion only if the lower bound of the gain's 95% interval is above this


@dataclass(frozen=True)
class TwoStage:
    """The detector + species classifier as one registered model (stages evaluate_two_stage, register_two_stage)."""

    model_name: str = "wildtrain-two-stage"
    gate_metric: str = "map50_95"
    export: bool = True
    gate_margin: float = 0.0  # champion only if the lower bound of the gain's 95% interval is above this


@dataclass(frozen=True)
class Predict:
    """`wildtrain predict` and the defaults of every registered model's predict-time params (its signature)."""

    conf: float = 0.25
    iou: float = 0.7
    max_det: int = 300
    slice: str = "auto"  # auto: slice images larger than the training images | off | a window size in px
    overlap: float = 0.2
    merge_ios: float = 0.5
    batch: int = 16
    device: str = "auto"


# The values each predict option accepts (params.yaml `predict`, and `wildtrain predict --OPTION`): one table, so
# the file and the command refuse the same values with the same words.
PREDICT_CHECKS: dict[str, tuple[typing.Callable[[Any], bool], str]] = {
    "conf": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "iou": (lambda v: 0 < v <= 1, "must be in (0, 1]"),
    "max_det": (lambda v: v >= 1, "must be >= 1"),
    "slice": (lambda v: v in ("auto", "off") or (v.isdigit() and int(v) >= 32),
              "must be auto, off or a window size in px (>= 32)"),
    "overlap": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "merge_ios": (lambda v: 0 < v <= 1, "must be in (0, 1]"),
    "batch": (lambda v: v >= 1, "must be >= 1"),
}


def _default_space() -> dict:
    return {"train.lr0": {"type": "float", "low": 0.0001, "high": 0.1, "log": True},
            "train.momentum": {"type": "float", "low": 0.8, "high": 0.98},
            "train.weight_decay": {"type": "float", "low": 0.00001, "high": 0.001, "log": True},
            "train.batch": {"type": "categorical", "choices": [8, 16]}}


@dataclass(frozen=True)
class Tune:
    """`wildtrain tune` (Optuna); no DVC stage depends on it. The space is checked by wildtrain.tune.space."""

    study: str = "wildtrain"
    storage: str = "sqlite:///optuna.db"
    metric: str = "map50_95"
    direction: Literal["maximize", "minimize"] = "maximize"
    split: Literal["train", "val", "test"] = "val"
    n_trials: int = 20
    timeout: int = 0
    sampler: Literal["tpe", "random"] = "tpe"
    seed: int = 0
    pruner: Literal["median", "hyperband", "none"] = "median"
    prune_metric: str = "metrics/mAP50-95(B)"
    prune_startup_trials: int = 3
    prune_warmup_epochs: int = 1
    space: dict = field(default_factory=_default_space)


@dataclass(frozen=True)
class Augment:
    """albumentations probabilities for training crops (0 turns one off)."""

    hflip: float = 0.5
    vflip: float = 0.5
    rotate90: float = 0.5
    brightness_contrast: float = 0.3


@dataclass(frozen=True)
class LightningTrain:
    """What every Lightning family's training section shares (classifier, segmenter): the fit, its devices, its
    resume. A family's section adds its model's keys and may change a default (redeclaring a key keeps its place)."""

    weights: str = ""
    imgsz: int = 64
    epochs: int = 30
    batch: int = 32
    lr: float = 0.001
    weight_decay: float = 0.01
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    scheduler: Literal["cosine", "none"] = "cosine"
    patience: int = 10
    precision: Literal["32-true", "16-mixed", "bf16-mixed"] = "32-true"
    accumulate_grad_batches: int = 1
    device: str = "auto"
    devices: int = 1
    num_nodes: int = 1  # machines; > 1: launched by torchrun or SLURM on each (docs/tutorials/team.md)
    strategy: Literal["auto", "ddp"] = "auto"
    workers: int = 2
    seed: int = 0
    resume: Literal["auto", "never"] = "auto"
    augment: Augment = field(default_factory=Augment)  # the segmenter applies it to the image and its mask together


@dataclass(frozen=True)
class Classifier(LightningTrain):
    backbone: Backbone = "resnet18"
    pretrained: bool = False
    imbalance: Literal["loss_weights", "sampler", "none"] = "loss_weights"
    monitor: Literal["f1_macro", "accuracy", "loss"] = "f1_macro"


@dataclass(frozen=True)
class Rebalance:
    enabled: bool = False
    embed: Literal["backbone", "pixels"] = "backbone"
    backbone: Backbone = "resnet18"
    weights: str = ""
    imgsz: int = 64
    clusters: int = 4
    target: int = 0
    max_copies: int = 3
    seed: int = 0


@dataclass(frozen=True)
class ClassifierEvaluate:
    split: str = "test"
    batch: int = 64
    device: str = "auto"
    misclassified: int = 16  # most misclassified crops drawn in the PNG logged to MLflow
    explain: int = 8  # test crops shown with Grad-CAM heatmaps (half misclassified where there are); 0 = none
    bootstrap: Bootstrap = field(default_factory=Bootstrap)


@dataclass(frozen=True)
class ClassifierRegister:
    model_name: str = "wildtrain-classifier"
    gate_metric: str = "f1_macro"
    export: bool = True  # ONNX + TorchScript, parity-checked against PyTorch
    gate_margin: float = 0.0  # champion only if the lower bound of the gain's 95% interval is above this


@dataclass(frozen=True)
class Segmenter(LightningTrain):
    """The semantic segmenter (stage train_segmenter): a segmentation-models-pytorch U-Net trained with Lightning
    on the canonical split files' masks. Classes: background + the dataset's categories."""

    weights: str = ""  # a local state dict: the encoder's (e.g. torchvision ImageNet resnet18) or a whole U-Net
    imgsz: int = 160  # images (or tiles) are resized so their long side is imgsz, padded to a square
    batch: int = 8
    lr: float = 0.002
    weight_decay: float = 0.0001
    encoder: str = "resnet18"  # any segmentation-models-pytorch encoder name; built from scratch or `weights`
    encoder_depth: int = 5  # 3..5 encoder stages (fewer: faster, less context)
    decoder_channels: int = 16  # the last decoder block's channels; each block above has twice as many
    loss: Literal["ce", "dice", "ce_dice", "focal"] = "ce_dice"
    focal_gamma: float = 2.0
    class_weights: Literal["sqrt_inverse", "inverse", "none"] = "sqrt_inverse"  # from the train pixel frequencies
    missing_masks: Literal["boxes", "ignore", "fail"] = "boxes"  # an annotation without a mask: its filled box
    monitor: Literal["miou", "loss"] = "miou"


@dataclass(frozen=True)
class SegmenterEvaluate:
    split: str = "test"
    batch: int = 16
    device: str = "auto"
    examples: int = 6  # test images drawn in metrics/plots/segmenter_examples.png (image | truth | prediction)
    bootstrap: Bootstrap = field(default_factory=Bootstrap)


@dataclass(frozen=True)
class SegmenterRegister:
    model_name: str = "wildtrain-segmenter"
    gate_metric: str = "miou"
    export: bool = True  # ONNX + TorchScript, parity-checked against PyTorch
    gate_margin: float = 0.0  # champion only if the lower bound of the gain's 95% interval is above this


@dataclass(frozen=True)
class YoloSeg:
    """The instance segmenter (`make instances`, off the default pipeline): Ultralytics YOLO-seg built from a model
    YAML shipped with Ultralytics (from scratch) or a local .pt, trained on polygons of the canonical masks."""

    model: str = "yolo11n-seg.yaml"  # a *-seg model YAML (yolo11n-seg.yaml, yolov8n-seg.yaml) or a local .pt
    epochs: int = 40
    imgsz: int = 320
    batch: int = 16
    lr0: float = 0.01
    lrf: float = 0.01
    momentum: float = 0.937
    weight_decay: float = 0.0005
    warmup_epochs: float = 3.0
    optimizer: str = "auto"
    cos_lr: bool = False
    seed: int = 0
    deterministic: bool = True
    patience: int = 100
    device: str = "auto"
    workers: int = 2
    amp: bool = True
    cache: bool = False
    mosaic: float = 1.0
    close_mosaic: int = 10
    fliplr: float = 0.5
    flipud: float = 0.5
    degrees: float = 0.0
    scale: float = 0.5
    resume: Literal["auto", "never"] = "auto"
    plots: bool = False


@dataclass(frozen=True)
class YoloSegEvaluate:
    """COCOeval segm (mask) and bbox mAP of the instance segmenter, with bootstrap intervals."""

    split: str = "test"
    device: str = "auto"
    conf: float = 0.001
    iou: float = 0.7
    max_det: int = 100
    batch: int = 16
    bootstrap: Bootstrap = field(default_factory=Bootstrap)


@dataclass(frozen=True)
class YoloSegRegister:
    model_name: str = "wildtrain-instances"
    gate_metric: str = "mask_map50_95"
    export: bool = True  # ONNX + TorchScript, parity-checked against PyTorch
    gate_margin: float = 0.0  # champion only if the lower bound of the gain's 95% interval is above this


@dataclass(frozen=True)
class Params:
    paths: Paths = field(default_factory=Paths)
    data: Data = field(default_factory=Data)
    convert: Convert = field(default_factory=Convert)
    train: Train = field(default_factory=Train)
    evaluate: Evaluate = field(default_factory=Evaluate)
    register: Register = field(default_factory=Register)
    tracking: Tracking = field(default_factory=Tracking)
    tune: Tune = field(default_factory=Tune)
    rebalance: Rebalance = field(default_factory=Rebalance)
    classifier: Classifier = field(default_factory=Classifier)
    classifier_evaluate: ClassifierEvaluate = field(default_factory=ClassifierEvaluate)
    classifier_register: ClassifierRegister = field(default_factory=ClassifierRegister)
    two_stage: TwoStage = field(default_factory=TwoStage)
    segmenter: Segmenter = field(default_factory=Segmenter)
    segmenter_evaluate: SegmenterEvaluate = field(default_factory=SegmenterEvaluate)
    segmenter_register: SegmenterRegister = field(default_factory=SegmenterRegister)
    yoloseg: YoloSeg = field(default_factory=YoloSeg)
    yoloseg_evaluate: YoloSegEvaluate = field(default_factory=YoloSegEvaluate)
    yoloseg_register: YoloSegRegister = field(default_factory=YoloSegRegister)
    predict: Predict = field(default_factory=Predict)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str, file: str) -> Any:
    def bad() -> WildtrainError:
        return WildtrainError(f"{file}: {key}: expected {_type_name(tp)}, got {value!r}")

    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key, file)
    if typing.get_origin(tp) is list:
        if not isinstance(value, list):
            raise bad()
        (item,) = typing.get_args(tp)
        return [_coerce(v, item, f"{key}[{i}]", file) for i, v in enumerate(value)]
    if tp is type(None):
        if value is not None:
            raise bad()
        return None
    if typing.get_origin(tp) is Literal:
        if value not in typing.get_args(tp):
            raise bad()
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise bad()
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise bad()
        return str(value)
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        if len(args) == 2 and type(None) in args:  # an optional value: the error of its one type (names the key)
            return _coerce(value, next(a for a in args if a is not type(None)), key, file)
        for arg in args:
            try:
                return _coerce(value, arg, key, file)
            except WildtrainError:
                continue
        raise bad()
    return value


def _build(cls: type, raw: Any, prefix: str, file: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise WildtrainError(f"{file}: {prefix or 'top level'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise WildtrainError(
            f"{file}: unknown key '{where}{unknown[0]}' (known in {prefix or 'top level'}: {', '.join(sorted(names))})"
        )
    kwargs = {}
    for name in names & set(raw):
        kwargs[name] = _coerce(raw[name], hints[name], f"{prefix}.{name}" if prefix else name, file)
    return cls(**kwargs)


def load(path: str | Path = PARAMS_FILE) -> Params:
    """Read and validate params.yaml (safe YAML); every section falls back to its defaults."""
    return validate(read_yaml(path, "params file"), str(path))


def validate(raw: Any, where: str) -> Params:
    """Params from an already-read mapping (e.g. params.yaml with `-S` overrides); errors name `where`."""
    params = _build(Params, raw, "", where)
    _check_values(params, where)
    _check_no_secrets(params, where)
    return params


def _check_no_secrets(p: Params, file: str) -> None:
    """params.yaml is tracked by git: a database URL in it carries no password (libpq reads it from elsewhere)."""
    from urllib.parse import urlsplit

    for key, url in (("tune.storage", p.tune.storage),):
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None
        if password:
            raise WildtrainError(f"{file}: {key}: the URL carries a password, and this file goes to git: remove it "
                                 f"(user@host only) and put it in a libpq password file (~/.pgpass, or PGPASSFILE; "
                                 f"`make services` writes one) or PGPASSWORD in the environment")


def _check_values(p: Params, file: str) -> None:
    checks = [
        (p.train.epochs >= 1, "train.epochs", "must be >= 1"),
        (p.train.imgsz >= 32 and p.train.imgsz % 32 == 0, "train.imgsz", "must be a multiple of 32, >= 32"),
        (p.train.batch >= 1, "train.batch", "must be >= 1"),
        (p.rebalance.clusters >= 1, "rebalance.clusters", "must be >= 1"),
        (p.rebalance.target >= 0, "rebalance.target", "must be >= 0 (0: the median class count)"),
        (p.rebalance.max_copies >= 1, "rebalance.max_copies", "must be >= 1"),
        (p.classifier_evaluate.explain >= 0, "classifier_evaluate.explain", "must be >= 0 (0: none)"),
        (p.train.lr0 > 0, "train.lr0", "must be > 0"),
        (p.train.mmdet.lr >= 0, "train.mmdet.lr", "must be >= 0 (0: the model config's own)"),
        (p.data.synthetic.num_images >= 3, "data.synthetic.num_images", "must be >= 3 (one per split)"),
        (p.data.synthetic.image_size >= 64, "data.synthetic.image_size", "must be >= 64"),
        (0 <= p.data.synthetic.empty_fraction < 1, "data.synthetic.empty_fraction", "must be in [0, 1)"),
        (0 < p.convert.val_fraction < 1, "convert.val_fraction", "must be in (0, 1)"),
        (0 < p.convert.test_fraction < 1, "convert.test_fraction", "must be in (0, 1)"),
        (p.convert.val_fraction + p.convert.test_fraction < 1, "convert", "val_fraction + test_fraction must be < 1"),
        (p.convert.tile.size == 0 or p.convert.tile.size >= 32, "convert.tile.size", "must be 0 (off) or >= 32"),
        (0 <= p.convert.tile.overlap < 1, "convert.tile.overlap", "must be in [0, 1)"),
        (0 < p.convert.tile.min_visibility <= 1, "convert.tile.min_visibility", "must be in (0, 1]"),
        (0 <= p.convert.tile.empty_ratio <= 1, "convert.tile.empty_ratio", "must be in [0, 1]"),
        (0 < p.evaluate.merge_ios <= 1, "evaluate.merge_ios", "must be in (0, 1]"),
        (0 <= p.evaluate.conf < 1, "evaluate.conf", "must be in [0, 1)"),
        (p.evaluate.split in ("train", "val", "test"), "evaluate.split", "must be train, val or test"),
        (p.classifier.epochs >= 1, "classifier.epochs", "must be >= 1"),
        (p.classifier.imgsz >= 32, "classifier.imgsz", "must be >= 32"),
        (p.classifier.batch >= 1, "classifier.batch", "must be >= 1"),
        (p.classifier.lr > 0, "classifier.lr", "must be > 0"),
        (p.classifier.devices >= 1, "classifier.devices", "must be >= 1"),
        (p.classifier.num_nodes >= 1, "classifier.num_nodes", "must be >= 1"),
        (p.classifier.accumulate_grad_batches >= 1, "classifier.accumulate_grad_batches", "must be >= 1"),
        (p.classifier_evaluate.split in ("train", "val", "test"), "classifier_evaluate.split",
         "must be train, val or test"),
        (p.data.stream_buffer >= 1, "data.stream_buffer", "must be >= 1 (samples)"),
        (not (p.data.stream and p.classifier.imbalance == "sampler"), "classifier.imbalance",
         "sampler needs random access to the crops; with data.stream use loss_weights or none"),
        (0 <= p.data.masks.ignore <= 65535, "data.masks.ignore", "must be a pixel value in 0..65535"),
        (p.segmenter.imgsz >= 32 and p.segmenter.imgsz % 32 == 0, "segmenter.imgsz", "must be a multiple of 32, >= 32"),
        (3 <= p.segmenter.encoder_depth <= 5, "segmenter.encoder_depth", "must be 3, 4 or 5"),
        (p.segmenter.decoder_channels >= 1, "segmenter.decoder_channels", "must be >= 1"),
        (p.segmenter.epochs >= 1, "segmenter.epochs", "must be >= 1"),
        (p.segmenter.batch >= 2, "segmenter.batch", "must be >= 2 (BatchNorm)"),
        (p.segmenter.lr > 0, "segmenter.lr", "must be > 0"),
        (p.segmenter.focal_gamma >= 0, "segmenter.focal_gamma", "must be >= 0"),
        (p.segmenter.devices >= 1, "segmenter.devices", "must be >= 1"),
        (p.segmenter.num_nodes >= 1, "segmenter.num_nodes", "must be >= 1"),
        (p.segmenter.accumulate_grad_batches >= 1, "segmenter.accumulate_grad_batches", "must be >= 1"),
        (p.segmenter_evaluate.split in ("train", "val", "test"), "segmenter_evaluate.split",
         "must be train, val or test"),
        (p.segmenter_evaluate.batch >= 1, "segmenter_evaluate.batch", "must be >= 1"),
        (p.yoloseg.imgsz >= 32 and p.yoloseg.imgsz % 32 == 0, "yoloseg.imgsz", "must be a multiple of 32, >= 32"),
        (p.yoloseg.epochs >= 1, "yoloseg.epochs", "must be >= 1"),
        (p.yoloseg.lr0 > 0, "yoloseg.lr0", "must be > 0"),
        (p.yoloseg_evaluate.split in ("train", "val", "test"), "yoloseg_evaluate.split", "must be train, val or test"),
        (0 <= p.yoloseg_evaluate.conf < 1, "yoloseg_evaluate.conf", "must be in [0, 1)"),
        *[check for key, b in (("evaluate", p.evaluate.bootstrap), ("classifier_evaluate",
                                                                   p.classifier_evaluate.bootstrap),
                               ("segmenter_evaluate", p.segmenter_evaluate.bootstrap),
                               ("yoloseg_evaluate", p.yoloseg_evaluate.bootstrap))
          for check in ((b.resamples >= 100, f"{key}.bootstrap.resamples", "must be >= 100 (a 95% interval needs them)"),
                        (b.seed >= 0, f"{key}.bootstrap.seed", "must be >= 0"))],
    ]
    checks += [(ok(getattr(p.predict, key)), f"predict.{key}", msg) for key, (ok, msg) in PREDICT_CHECKS.items()]
    checks += _phase_checks(p.train)
    for ok, key, msg in checks:
        if not ok:
            raise WildtrainError(f"{file}: {key}: {msg}")


def _phase_checks(t: Train) -> list[tuple[bool, str, str]]:
    if not t.phases:
        return []
    checks = [(t.framework == "yolo", "train.phases",
               f"training in phases is for framework yolo only (framework is {t.framework}): set phases: []")]
    for k, ph in enumerate(t.phases):
        key = f"train.phases[{k}]"
        checks += [
            (ph.epochs is None or ph.epochs >= 1, f"{key}.epochs", "must be >= 1"),
            (ph.imgsz is None or (ph.imgsz >= 32 and ph.imgsz % 32 == 0), f"{key}.imgsz",
             "must be a multiple of 32, >= 32"),
            (ph.batch is None or ph.batch >= 1, f"{key}.batch", "must be >= 1"),
            (ph.lr0 is None or ph.lr0 > 0, f"{key}.lr0", "must be > 0"),
            (ph.freeze is None or ph.freeze >= 0, f"{key}.freeze", "must be >= 0 (the first N layers)"),
            (0 <= ph.empty_ratio <= 1, f"{key}.empty_ratio", "must be in [0, 1]"),
            (ph.mine is None or 0 < ph.mine.score < 1, f"{key}.mine.score", "must be in (0, 1)"),
            (ph.mine is None or k < len(t.phases) - 1, f"{key}.mine",
             "mines hard negatives for the next phase: the last phase has none"),
        ]
    return checks


def as_dict(obj: Any) -> dict:
    return dataclasses.asdict(obj)


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}: how params are logged to MLflow."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{key}."))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):  # train.phases -> train.phases.0.epochs
            out.update(flatten({str(i): x for i, x in enumerate(v)}, f"{key}."))
        else:
            out[key] = v
    return out


def _merge(base: dict, overlay: dict, prefix: str, file: str) -> dict:
    out = dict(base)
    for k, v in overlay.items():
        key = f"{prefix}{k}"
        if k not in base:
            raise WildtrainError(f"{file}: unknown key '{key}' (not in {PARAMS_FILE})")
        out[k] = _merge(base[k], v, f"{key}.", file) if isinstance(v, dict) and isinstance(base[k], dict) else v
    return out


def apply_overlay(overlay_file: str | Path, params_file: str | Path = PARAMS_FILE) -> dict:
    """Merge a config overlay (e.g. configs/tiny.yaml) into params.yaml, refusing keys params.yaml lacks."""
    base = read_yaml(params_file, "params file") or {}
    overlay = read_yaml(overlay_file, "config overlay") or {}
    if not isinstance(overlay, dict):
        raise WildtrainError(f"{overlay_file}: expected a mapping of params sections")
    merged = _merge(base, overlay, "", str(overlay_file))
    _check_no_secrets(_build(Params, merged, "", str(overlay_file)), str(overlay_file))  # validate before writing
    write_yaml(params_file, merged)
    return merged
