"""COCO mAP with pycocotools' COCOeval (not a home-made metric), per-class AP, PR curve, confusion matrix."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import numpy as np

from wildtrain.data.coco import CocoDataset, load_coco
from wildtrain.errors import WildtrainError
from wildtrain.evaluate import bootstrap, evaluation_hash
from wildtrain.evaluate.detection_table import DetectionTable
from wildtrain.evaluate.matching import matches
from wildtrain.contract import Detections
from wildtrain.io import sha256_file, write_json
from wildtrain.layout import image_root

BACKGROUND = "background"
# COCOeval's summary stats, in ev.stats order: the numeric keys of metrics/eval.json one may gate or tune on.
STAT_NAMES = ("map50_95", "map50", "map75", "map_small", "map_medium", "map_large",
              "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large")


def to_coco_results(dataset: CocoDataset, detections: list[Detections],
                    class_names: list[str] | None = None) -> list[dict]:
    """Predictions (class indices into `class_names`, the dataset's own by default; one entry per image in
    dataset.images order) -> COCO results with the dataset's category ids."""
    if len(detections) != len(dataset.images):
        raise ValueError(f"{len(detections)} prediction sets for {len(dataset.images)} images")
    by_name = dict(zip(dataset.class_names, dataset.category_ids))
    cat_ids = [by_name[n] for n in (class_names or dataset.class_names)]
    results = []
    for im, det in zip(dataset.images, detections):
        for box, cls, score in zip(det.boxes, det.classes, det.scores):
            results.append({"image_id": im["id"], "category_id": cat_ids[int(cls)],
                            "bbox": [round(float(v), 3) for v in box], "score": round(float(score), 5)})
    return results


def _coco_api(dataset: CocoDataset):
    from pycocotools.coco import COCO

    gt = COCO()
    d = dataset.to_dict()
    d["annotations"] = [{**a, "area": a.get("area", a["bbox"][2] * a["bbox"][3]), "iscrowd": a.get("iscrowd", 0)}
                        for a in d["annotations"]]
    gt.dataset = d
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def run_cocoeval(dataset: CocoDataset, results: list[dict]):
    """pycocotools' COCOeval (bbox) after evaluate(), accumulate() and summarize(); None with nothing to score."""
    from pycocotools.cocoeval import COCOeval

    if not results or not dataset.annotations:
        return None
    gt = _coco_api(dataset)
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def coco_eval(dataset: CocoDataset, results: list[dict], ev=None) -> dict[str, Any]:
    """COCOeval (bbox) summary stats, per-class AP and the mean PR curve at IoU 0.5 (`ev`: run_cocoeval's, if
    already run)."""
    names = dict(zip(dataset.category_ids, dataset.class_names))
    instances = dataset.class_counts()
    if ev is None:
        ev = run_cocoeval(dataset, results)
    if ev is None:
        zero = {k: 0.0 for k in STAT_NAMES}
        per_class = {n: {"ap50_95": 0.0, "ap50": 0.0, "instances": instances[n]} for n in dataset.class_names}
        return {**zero, "per_class": per_class, "pr_curve": []}
    stats = {k: max(0.0, float(v)) for k, v in zip(STAT_NAMES, ev.stats)}
    precision = ev.eval["precision"]  # [iou, recall, class, area, maxdet]
    per_class = {}
    for k, cid in enumerate(ev.params.catIds):
        p_all, p_50 = precision[:, :, k, 0, -1], precision[0, :, k, 0, -1]
        has_gt = instances[names[cid]] > 0
        per_class[names[cid]] = {
            "ap50_95": float(np.mean(p_all[p_all > -1])) if has_gt and (p_all > -1).any() else None,
            "ap50": float(np.mean(p_50[p_50 > -1])) if has_gt and (p_50 > -1).any() else None,
            "instances": instances[names[cid]],
        }
    curves = precision[0, :, :, 0, -1]  # [recall, class] at IoU 0.5
    valid = (curves > -1).all(axis=0)
    mean_curve = curves[:, valid].mean(axis=1) if valid.any() else np.zeros(len(ev.params.recThrs))
    pr_curve = [{"recall": round(float(r), 2), "precision": round(float(p), 6)}
                for r, p in zip(ev.params.recThrs, mean_curve)]
    per_class_curves = {names[cid]: curves[:, k].tolist() for k, cid in enumerate(ev.params.catIds) if valid[k]}
    return {**stats, "per_class": per_class, "pr_curve": pr_curve,
            "pr_curves_by_class": per_class_curves, "recall_thresholds": ev.params.recThrs.tolist()}


def confusion_pairs(dataset: CocoDataset, results: list[dict], conf: float, iou: float) -> list[dict]:
    """(actual, predicted) rows; a missed box is predicted `background`, an extra one is actually `background`."""
    names = dict(zip(dataset.category_ids, dataset.class_names))

    def name(box: dict | None) -> str:
        return BACKGROUND if box is None else names[box["category_id"]]

    return [{"actual": name(m["gt"]), "predicted": name(m["dt"])} for m in matches(dataset, results, conf, iou)]


def test_split(p, root: Path) -> tuple[Path, CocoDataset, dict | None]:
    """The split the detector is scored on: full-size images and their annotations, and the tiling used in
    training (then predicted slice by slice, like the tiles it was trained on)."""
    coco_file = root / p.paths.coco / f"{p.evaluate.split}.json"
    ds = load_coco(coco_file)
    tiling = ds.info.get("tiling")
    if tiling:
        coco_file = coco_file.parent / ds.info["full"]
        ds = load_coco(coco_file)
    return coco_file, ds, tiling


def predict_split(predictor, ds: CocoDataset, images: Path, options: dict, chunk: int = 16) -> list[Detections]:
    """Predictions for every image of a split, read a few at a time (large splits never sit in memory whole)."""
    from wildtrain.data.images import load_rgb

    out: list[Detections] = []
    for start in range(0, len(ds.images), chunk):
        arrays = [load_rgb(images / im["file_name"]) for im in ds.images[start:start + chunk]]
        out += predictor.predict(arrays, **options)
    return out


def evaluate_detector(predictor, p, root: Path, prefix: str | None) -> tuple[dict, DetectionTable]:
    """Any detector (or two-stage) Predictor scored by COCOeval on the evaluate split, with bootstrap intervals and
    the counting error at predict.conf; and its per-image table (what the register gate compares). Unless prefix is
    None, the COCO predictions, PR curve, confusion matrix and error gallery are written too, their names prefixed."""
    from wildtrain.data.split import unit_key
    from wildtrain.evaluate import gallery, plots

    e, card = p.evaluate, predictor.card
    coco_file, ds, tiling = test_split(p, root)
    if sorted(card.class_names) != sorted(ds.class_names):
        raise WildtrainError(f"{coco_file}: the model's classes ({', '.join(card.class_names)}) differ from the "
                             f"split's ({', '.join(ds.class_names)}): its scores would not compare")
    options = {"conf": e.conf, "iou": e.iou, "max_det": e.max_det, "batch": e.batch, "merge_ios": e.merge_ios,
               "slice": tiling["size"] if tiling else "off"}
    if tiling:
        options["overlap"] = tiling["overlap"]
    detections = predict_split(predictor, ds, image_root(coco_file, ds.info), options)
    results = to_coco_results(ds, detections, card.class_names)
    scored = run_cocoeval(ds, results)
    ev = coco_eval(ds, results, scored)
    pr_curve, curves, recall = ev.pop("pr_curve"), ev.pop("pr_curves_by_class", {}), ev.pop("recall_thresholds", [])
    table = DetectionTable.build(ds, results, scored, p.predict.conf, unit_key)
    metrics = {"split": e.split, "framework": card.framework, "images": len(ds.images), "detections": len(results),
               "sliced": bool(tiling), **ev, "count_conf": p.predict.conf,
               "evaluation_hash": evaluation_hash({"annotations": sha256_file(coco_file),
                                                   "dataset": ds.info.get("dataset_hash")},
                                                  {**options, "count_conf": p.predict.conf})}
    metrics = bootstrap.with_intervals(metrics, table, e.bootstrap)
    if prefix is not None:
        plot_dir = root / p.paths.plots
        rows = confusion_pairs(ds, results, e.confusion_conf, e.confusion_iou)
        predictions = root / (p.paths.predictions + (f"_{prefix.rstrip('_')}" if prefix else ""))
        write_json(predictions / f"{e.split}.json", results, indent=None)
        write_json(plot_dir / f"{prefix}pr_curve.json", pr_curve)
        write_json(plot_dir / f"{prefix}confusion.json", rows)
        plots.pr_curves_png(plot_dir / f"{prefix}pr_curve.png", recall, curves, f"PR at IoU 0.5 ({e.split})")
        plots.confusion_png(plot_dir / f"{prefix}confusion.png", rows, [*ds.class_names, BACKGROUND])
        metrics["gallery"] = gallery.errors_png(plot_dir / f"{prefix}{gallery.FILE}", ds,
                                                image_root(coco_file, ds.info), results, e.confusion_conf,
                                                e.confusion_iou)
    return metrics, table
