"""Where things live in a project: the folders DVC tracks and the file names that stages share.

Stages never import each other: a name one stage writes and another reads is defined here, once.
dvc.yaml mirrors `Paths` (a test checks).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    """Project-relative folders (tune trials redirect the writable ones into a trial folder)."""

    source: str = "data/source"  # user datasets brought in by `wildtrain data add` (each a DVC-tracked folder/archive)
    raw: str = "data/raw"
    coco: str = "data/coco"
    yolo: str = "data/yolo"
    crops: str = "data/crops"
    rebalance: str = "data/rebalance"  # rebalance_crops: how often each training crop is shown per epoch
    reports: str = "data/reports"
    predictions: str = "data/predictions"
    models: str = "models"  # the detector's model folder
    classifier: str = "models_classifier"  # the species classifier's model folder
    segmenter: str = "models_segmenter"  # the semantic segmenter's model folder
    yoloseg: str = "models_yoloseg"  # the instance segmenter's model folder (`make instances`)
    runs: str = "runs"  # training work folders (checkpoints for resume), runs/<family>
    publish: str = "publish"  # register: publish/<family>/ (exports, STAC item, .dlpk, model card)
    metrics: str = "metrics"
    plots: str = "metrics/plots"


# data/raw (prepare)
ANNOTATIONS, MANIFEST, IMAGES = "annotations.json", "manifest.json", "images"
VALIDATION_REPORT = "validation.json"  # in Paths.reports
REVIEW_LINEAGE = "label_studio/lineage.json"  # in a source `wildtrain annotate pull` wrote: project, export, edits
# data/coco (convert): tile images and the untiled split files when tiling, WebDataset shards when asked
TILES, FULL, SHARDS = "tiles", "full", "shards"
# data/crops (convert): how the ROI crops were cut, so a two-stage model cuts detections the same way
CROPS_INFO = "crops.json"
CROPS_UNITS = "units.json"  # split -> image stem -> the image's split unit (crops of one image are resampled together)
# data/rebalance (rebalance_crops): showings per epoch of each training crop, read by the classifier
REBALANCE_PLAN = "train.json"
# data/yolo (convert)
YOLO_DATASET = "dataset.yaml"
# every trained model folder: its card (family, framework, classes, input, hashes, MLflow run) + the files it names
MODEL_CARD = "model.json"
SPLITS = ("train", "val", "test")


def tables_file(paths: Paths, suffix: str, split: str) -> str:
    """A family's per-unit evaluation table (evaluate writes it beside its predictions; register reads it):
    data/predictions{suffix}/<split>_tables.npz."""
    return f"{paths.predictions}{suffix}/{split}_tables.npz"


def image_root(coco_file: Path, info: dict) -> Path:
    """Images of a canonical COCO file live at info.image_root, relative to the file itself."""
    return (coco_file.parent / info.get("image_root", ".")).resolve()


