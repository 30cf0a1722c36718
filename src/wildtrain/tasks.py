"""What a model does — detection, classification or segmentation — as one descriptor per task, so the code that
serves, writes, publishes and describes a model looks its task up here instead of asking which task it is.

A model card names its task (`ModelCard.task`); an exported model its output (`ExportIO.output`). Both lead to the
same descriptor. A new task is one more `Task` below; a new family of an existing task needs nothing here.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Callable

from wildtrain.contract import Classification, Detections, Instances, ModelCard, Segmentation
from wildtrain.errors import WildtrainError


def _detection_row(names: list[str], pred: Detections) -> dict:
    labels = [names[c] for c in pred.classes]
    return {"boxes": [[round(v, 2) for v in b] for b in pred.boxes],
            "scores": [round(s, 5) for s in pred.scores], "labels": labels,
            "counts": {n: labels.count(n) for n in sorted(set(labels))}}


def _instances_row(names: list[str], pred: Instances) -> dict:
    return {**_detection_row(names, pred),
            "polygons": [[[round(v, 2) for v in poly] for poly in polys] for polys in pred.polygons]}


def _classification_row(names: list[str], pred: Classification) -> dict:
    return {"label": names[pred.label], "score": round(pred.scores[pred.label], 5),
            "scores": {n: round(s, 5) for n, s in zip(names, pred.scores)}}


def _segmentation_row(names: list[str], pred: Segmentation) -> dict:
    areas = pred.areas(len(names))
    total = max(1, sum(areas))
    return {"mask_png": base64.b64encode(pred.png()).decode("ascii"), "height": int(pred.mask.shape[0]),
            "width": int(pred.mask.shape[1]), "classes": list(names),
            "areas": dict(zip(names, areas)), "fractions": {n: round(a / total, 6) for n, a in zip(names, areas)}}


def _detection_use(card: ModelCard) -> str:
    return (f"Finding and counting {', '.join(card.class_names)} in nadir aerial survey images (drone or aircraft) "
            f"like the training data: 8-bit RGB at about the same ground sampling distance. Counts support human "
            f"review of surveys; they are not census figures without it.")


def _classification_use(card: ModelCard) -> str:
    classes = ", ".join(card.class_names)
    crop = card.input.get("crop") or "padding recorded in model.json"
    return (f"Naming the species ({classes}) of an animal already located in aerial survey imagery: a crop cut "
            f"around its box as in training ({crop}), resized to {card.input.get('size')} px. Results support human "
            f"review of survey counts.")


def _segmentation_use(card: ModelCard) -> str:
    return (f"Mapping {', '.join(card.class_names)} per pixel in aerial survey imagery like the training data. "
            f"Results support human review.")


def _instances_use(card: ModelCard) -> str:
    return (f"Outlining and counting {', '.join(card.class_names)} in nadir aerial survey images like the training "
            f"data: one polygon per animal. Outlines and counts support human review.")


def _instances_limits(card: ModelCard) -> list[str]:
    size = card.input.get("size")
    return [f"Sees each image whole, letterboxed to {size} px (no slicing): animals in images much larger than the "
            f"training images shrink below what it learned; cut such images into tiles first.",
            "Outlines are traced from masks at the image's resolution and simplified to within about 1 px; holes in "
            "a mask are not kept."]


def _detection_limits(card: ModelCard) -> list[str]:
    size = card.input.get("size")
    return [f"Sees images at {size} px (the training size): `wildtrain predict` slices larger images; the ONNX, "
            f"TorchScript and .dlpk models take one {size}x{size} tile at a time, so objects must be as large in "
            f"pixels as in training (same ground sampling distance)."]


@dataclass(frozen=True)
class Task:
    name: str  # ModelCard.task
    output: str  # ExportIO.output of its exports: how to read the exported model's output
    prediction: type  # what its Predictor gives per image
    row: Callable[[list[str], Any], dict]  # one prediction as served JSON (serve.as_rows), given the class names
    writes: str  # what `wildtrain predict` writes (prediction.writers): detections | labels | masks | instances
    drawn: bool  # whether `wildtrain predict --draw` has something to draw (boxes, class maps)
    streamed: bool  # whether `wildtrain predict` streams a large raster window by window (prediction.raster)
    stac_task: str  # the STAC MLM task (mlm:tasks, mlm:output tasks)
    post_processing: str  # STAC mlm:output post_processing_function: how to read the exported output
    esri_model_type: str  # the .dlpk's ModelType (what ArcGIS runs it as); "": no .dlpk for this task
    parity: str  # how publishing checks an export against PyTorch (publish.parity): boxes | values | instances
    data_unit: str  # what the model card's data table counts per class: boxes | crops
    intended_use: Callable[[ModelCard], str]  # the model card's "Intended use"
    limits: Callable[[ModelCard], list[str]]  # the model card's known limits that come from the task

    @property
    def boxes(self) -> bool:
        """Whether its predictions are boxes (class filters, max_det limits and censuses apply)."""
        return issubclass(self.prediction, Detections)


DETECTION = Task(
    name="object-detection", output="yolo", prediction=Detections, row=_detection_row,
    writes="detections", drawn=True, streamed=True, stac_task="object-detection",
    post_processing="WildtrainInference.py:decode_yolo (boxes cx, cy, w, h in input px; per-class sigmoid scores; "
                    "class-aware NMS; letterbox undone)",
    esri_model_type="ObjectDetection", parity="boxes", data_unit="boxes",
    intended_use=_detection_use, limits=_detection_limits)
CLASSIFICATION = Task(
    name="classification", output="logits", prediction=Classification, row=_classification_row,
    writes="labels", drawn=False, streamed=False, stac_task="classification",
    post_processing="softmax over classes",
    esri_model_type="ObjectClassification", parity="values", data_unit="crops",
    intended_use=_classification_use, limits=lambda card: [])
SEGMENTATION = Task(
    name="semantic-segmentation", output="segmentation", prediction=Segmentation, row=_segmentation_row,
    writes="masks", drawn=True, streamed=True, stac_task="semantic-segmentation",
    post_processing="argmax over classes per pixel",
    esri_model_type="ClassifyPixels", parity="values", data_unit="boxes",
    intended_use=_segmentation_use, limits=lambda card: [])

INSTANCE_SEGMENTATION = Task(
    name="instance-segmentation", output="yolo-seg", prediction=Instances, row=_instances_row,
    writes="instances", drawn=True, streamed=False, stac_task="instance-segmentation",
    post_processing="as yolo for rows 0..4+classes (boxes, scores, NMS); rows 4+classes.. are 32 mask coefficients: "
                    "sigmoid(coefficients @ prototypes of output1 [N, 32, size/4, size/4]) cropped to the box, "
                    "upsampled, > 0.5; letterbox undone",
    esri_model_type="", parity="instances", data_unit="boxes",
    intended_use=_instances_use, limits=_instances_limits)

TASKS = {t.name: t for t in (DETECTION, CLASSIFICATION, SEGMENTATION, INSTANCE_SEGMENTATION)}
OUTPUTS = {t.output: t for t in TASKS.values()}


def task_of(card: ModelCard) -> Task:
    """The task of a model, from its card; an unknown one is one clear line."""
    if card.task not in TASKS:
        raise WildtrainError(f"model card: unknown task '{card.task}' (known: {', '.join(TASKS)})")
    return TASKS[card.task]


def task_of_output(output: str) -> Task:
    """The task of an exported model, from what its output is (ExportIO.output)."""
    if output not in OUTPUTS:
        raise WildtrainError(f"exported model: unknown output '{output}' (known: {', '.join(OUTPUTS)})")
    return OUTPUTS[output]
