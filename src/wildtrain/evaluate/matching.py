"""Greedy box matching per image: what the confusion matrix (evaluate.detection) and the error gallery
(evaluate.gallery) count. Its own module so that neither of those imports the other."""

from __future__ import annotations

import numpy as np

from wildtrain.data.coco import CocoDataset


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between xywh boxes a [N,4] and b [M,4]."""
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, 0][:, None], b[:, 0][None]), 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, 1][:, None], b[:, 1][None]), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def matches(dataset: CocoDataset, results: list[dict], conf: float, iou: float) -> list[dict]:
    """Greedy class-agnostic matching by score, per image: one row per (ground truth, detection) pair, and per
    unmatched box (the other side None). What the confusion matrix and the error gallery count."""
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
            rows.append({"image_id": im["id"], "gt": gts[best] if best >= 0 else None, "dt": d})
        rows += [{"image_id": im["id"], "gt": g, "dt": None} for j, g in enumerate(gts) if j not in matched_gt]
    return rows
