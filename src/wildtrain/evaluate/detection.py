"""COCO mAP with pycocotools' COCOeval (not a home-made metric), per-class AP, PR curve, confusion matrix."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np

from wildtrain.data.coco import CocoDataset
from wildtrain.models.base import Detections

BACKGROUND = "background"
# COCOeval's summary stats, in ev.stats order: the numeric keys of metrics/eval.json one may gate or tune on.
STAT_NAMES = ("map50_95", "map50", "map75", "map_small", "map_medium", "map_large",
              "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large")


def to_coco_results(dataset: CocoDataset, detections: list[Detections]) -> list[dict]:
    """Adapter output (class indices, one entry per image in dataset.images order) -> COCO results."""
    if len(detections) != len(dataset.images):
        raise ValueError(f"{len(detections)} prediction sets for {len(dataset.images)} images")
    cat_ids = dataset.category_ids
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


def coco_eval(dataset: CocoDataset, results: list[dict]) -> dict[str, Any]:
    """Run COCOeval (bbox) and return summary stats, per-class AP and the mean PR curve at IoU 0.5."""
    from pycocotools.cocoeval import COCOeval

    names = dict(zip(dataset.category_ids, dataset.class_names))
    instances = dataset.class_counts()
    if not results or not dataset.annotations:
        zero = {k: 0.0 for k in STAT_NAMES}
        per_class = {n: {"ap50_95": 0.0, "ap50": 0.0, "instances": instances[n]} for n in dataset.class_names}
        return {**zero, "per_class": per_class, "pr_curve": []}
    gt = _coco_api(dataset)
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
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


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between xywh boxes a [N,4] and b [M,4]."""
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, 0][:, None], b[:, 0][None]), 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, 1][:, None], b[:, 1][None]), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def confusion_pairs(dataset: CocoDataset, results: list[dict], conf: float, iou: float) -> list[dict]:
    """(actual, predicted) rows: greedy class-agnostic matching by score; misses/extra boxes vs background."""
    names = dict(zip(dataset.category_ids, dataset.class_names))
    by_image_gt = dataset.annotations_by_image()
    by_image_dt: dict[int, list[dict]] = {im["id"]: [] for im in dataset.images}
    for r in results:
        if r["score"] >= conf:
            by_image_dt[r["image_id"]].append(r)
    rows = []
    for im in dataset.images:
        gts, dts = by_image_gt[im["id"]], sorted(by_image_dt[im["id"]], key=lambda r: -r["score"])
        matched_gt: set[int] = set()
        if gts and dts:
            ious = _iou(np.array([d["bbox"] for d in dts], float), np.array([g["bbox"] for g in gts], float))
        for i, d in enumerate(dts):
            best, best_iou = -1, iou
            for j in range(len(gts)):
                if j not in matched_gt and ious[i, j] >= best_iou:
                    best, best_iou = j, ious[i, j]
            if best >= 0:
                matched_gt.add(best)
                rows.append({"actual": names[gts[best]["category_id"]], "predicted": names[d["category_id"]]})
            else:
                rows.append({"actual": BACKGROUND, "predicted": names[d["category_id"]]})
        rows.extend({"actual": names[g["category_id"]], "predicted": BACKGROUND}
                    for j, g in enumerate(gts) if j not in matched_gt)
    return rows
