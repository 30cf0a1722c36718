"""Instance segmentation scored twice by pycocotools' COCOeval, on the same predictions: `segm` (mask IoU; metrics
`mask_map50_95`, `mask_map50`, ...) and `bbox` (box IoU; `map50_95`, `map50`, ... as a detector's), with the
bootstrap intervals of both from one per-image table (each COCOeval's matches, as evaluate.detection_table).

Predicted outlines are scored as the user gets them (the polygons `wildtrain predict` writes, rasterized by
pycocotools); a ground-truth annotation without a mask is scored as its filled box, as the family trains on it."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from wildtrain.data.coco import CocoDataset, load_coco
from wildtrain.data.masks import has_mask
from wildtrain.errors import WildtrainError
from wildtrain.evaluate import bootstrap, evaluation_hash
from wildtrain.evaluate.detection import STAT_NAMES, coco_eval, predict_split, to_coco_results
from wildtrain.evaluate.detection_table import DetectionTable
from wildtrain.io import sha256_file, write_json
from wildtrain.layout import image_root

MASK = "mask_"  # prefix of the segm metrics (top level and per class)


def segm_results(dataset: CocoDataset, predictions: list, class_names: list[str]) -> list[dict]:
    """COCO segm results: each instance's polygons as one compressed RLE (pycocotools' loadRes wants RLE)."""
    from pycocotools import mask as coco_mask

    boxes = to_coco_results(dataset, predictions, class_names)
    out, k = [], 0
    for im, pred in zip(dataset.images, predictions):
        h, w = im["height"], im["width"]
        for polys in pred.polygons:
            polys = [list(map(float, p)) for p in polys if len(p) >= 6]
            rle = coco_mask.merge(coco_mask.frPyObjects(polys, h, w)) if polys else \
                coco_mask.encode(np.zeros((h, w, 1), np.uint8, order="F"))[0]
            out.append({**{key: v for key, v in boxes[k].items() if key != "bbox"},
                        "segmentation": {"size": [h, w], "counts": rle["counts"].decode("ascii")}})
            k += 1
    return out


def _gt(dataset: CocoDataset):
    """pycocotools' COCO of the split; annotations without a mask get their box as a polygon."""
    from pycocotools.coco import COCO

    d = dataset.to_dict()
    anns = []
    for a in d["annotations"]:
        x, y, bw, bh = a["bbox"]
        seg = a["segmentation"] if has_mask(a) else [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]]
        anns.append({**a, "segmentation": seg, "area": a.get("area", bw * bh), "iscrowd": a.get("iscrowd", 0)})
    d["annotations"] = anns
    gt = COCO()
    gt.dataset = d
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def run(dataset: CocoDataset, results: list[dict], iou_type: str):
    """COCOeval (`segm` or `bbox`) after evaluate(), accumulate() and summarize(); None with nothing to score."""
    from pycocotools.cocoeval import COCOeval

    if not results or not dataset.annotations:
        return None
    gt = _gt(dataset)
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes([dict(r) for r in results]), iouType=iou_type)  # loadRes adds keys in place
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


class InstanceTable:
    """The box table and the mask table of one evaluation (same images, same units): a resample scores both."""

    kind = "instances"

    def __init__(self, box: DetectionTable, mask: DetectionTable):
        self.box, self.mask, self.units = box, mask, box.units

    def scores(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        out = self.box.scores(weights)
        for name, v in self.mask.scores(weights).items():
            if "count_" in name:  # the same boxes counted: already in the box table's
                continue
            head, _, metric = name.rpartition(".")
            out[f"{head}.{MASK}{metric}" if head else MASK + metric] = v
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        return {**{f"box__{k}": v for k, v in self.box.arrays().items()},
                **{f"mask__{k}": v for k, v in self.mask.arrays().items()}}

    @classmethod
    def from_arrays(cls, units: list[str], a: dict[str, np.ndarray]) -> "InstanceTable":
        def part(prefix: str) -> DetectionTable:
            return DetectionTable.from_arrays(units, {k[len(prefix):]: v for k, v in a.items() if k.startswith(prefix)})

        return cls(part("box__"), part("mask__"))


def split_file(p, root: Path) -> tuple[Path, CocoDataset]:
    """The split scored (its untiled images when convert tiled: the model sees whole images)."""
    coco_file = root / p.paths.coco / f"{p.yoloseg_evaluate.split}.json"
    if not coco_file.is_file():
        raise WildtrainError(f"{coco_file}: not found; the instance segmenter is scored on convert's output")
    ds = load_coco(coco_file)
    if ds.info.get("tiling"):
        coco_file = coco_file.parent / ds.info["full"]
        ds = load_coco(coco_file)
    return coco_file, ds


def evaluate_instances(predictor, p, root: Path, write_outputs: bool, suffix: str) -> tuple[dict, InstanceTable]:
    """segm and bbox COCOeval on the yoloseg_evaluate split, with bootstrap intervals; the per-image table. With
    write_outputs, the segm results (data/predictions{suffix}/<split>.json) and the mask PR curve."""
    from wildtrain.data.split import unit_key
    from wildtrain.evaluate import plots

    e, card = p.yoloseg_evaluate, predictor.card
    coco_file, ds = split_file(p, root)
    if sorted(card.class_names) != sorted(ds.class_names):
        raise WildtrainError(f"{coco_file}: the model's classes ({', '.join(card.class_names)}) differ from the "
                             f"split's ({', '.join(ds.class_names)}): its scores would not compare")
    options = {"conf": e.conf, "iou": e.iou, "max_det": e.max_det, "batch": e.batch}
    predictions = predict_split(predictor, ds, image_root(coco_file, ds.info), options)
    boxes = to_coco_results(ds, predictions, card.class_names)
    segms = segm_results(ds, predictions, card.class_names)
    ev_box, ev_mask = run(ds, boxes, "bbox"), run(ds, segms, "segm")
    box, mask = coco_eval(ds, boxes, ev_box), coco_eval(ds, segms, ev_mask)
    box.pop("pr_curve"), box.pop("pr_curves_by_class", None), box.pop("recall_thresholds", None)
    pr_curve, curves, recall = mask.pop("pr_curve"), mask.pop("pr_curves_by_class", {}), \
        mask.pop("recall_thresholds", [])
    per_class = {n: {**box["per_class"][n], **{MASK + k: v for k, v in mask["per_class"][n].items()
                                               if k != "instances"}} for n in box["per_class"]}
    table = InstanceTable(DetectionTable.build(ds, boxes, ev_box, p.predict.conf, unit_key),
                          DetectionTable.build(ds, segms, ev_mask, p.predict.conf, unit_key))
    metrics = {"split": e.split, "framework": card.framework, "images": len(ds.images), "instances": len(segms),
               **{k: box[k] for k in STAT_NAMES}, **{MASK + k: mask[k] for k in STAT_NAMES}, "per_class": per_class,
               "count_conf": p.predict.conf,
               "evaluation_hash": evaluation_hash({"annotations": sha256_file(coco_file),
                                                   "dataset": ds.info.get("dataset_hash")},
                                                  {**options, "count_conf": p.predict.conf, "iou_types": "segm+bbox"})}
    metrics = bootstrap.with_intervals(metrics, table, e.bootstrap)
    if write_outputs:
        write_json(root / f"{p.paths.predictions}{suffix}" / f"{e.split}.json", segms, indent=None)
        write_json(root / p.paths.plots / "yoloseg_pr_curve.json", pr_curve)
        plots.pr_curves_png(root / p.paths.plots / "yoloseg_pr_curve.png", recall, curves,
                            f"Mask PR at IoU 0.5 ({e.split})")
    return metrics, table
