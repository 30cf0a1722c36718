"""Sliced inference on full-size images: predict every tile with the adapter, shift boxes back, merge.

Merging is greedy non-maximum merging by intersection over the smaller box (as in SAHI's GREEDYNMM):
an animal cut by a tile border is seen whole in one tile and in part in its neighbour; the part lies
inside the whole (IoS ~ 1, though its IoU may be only 0.5), so it is merged into one box — the union —
instead of surviving plain NMS as a duplicate.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from wildtrain.data.tiling import windows
from wildtrain.models.base import DetectorAdapter, Detections

TILES_PER_CALL = 256  # tiles written to a scratch folder and predicted per adapter call


def intersection_over_smaller(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoS between one xyxy box and N xyxy boxes."""
    iw = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    smaller = np.minimum(area(box), area(others))
    return np.where(smaller > 0, iw * ih / np.maximum(smaller, 1e-12), 0.0)


def merge(boxes: list[list[float]], classes: list[int], scores: list[float], ios: float,
          max_det: int | None = None) -> Detections:
    """Greedy merge per class: the best box absorbs same-class boxes overlapping it by >= ios (of the smaller)."""
    if not boxes:
        return Detections([], [], [])
    xywh = np.asarray(boxes, dtype=np.float64)
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    cls, score = np.asarray(classes), np.asarray(scores, dtype=np.float64)
    order = np.argsort(-score, kind="stable")
    used = np.zeros(len(order), bool)
    out_boxes, out_cls, out_scores = [], [], []
    for i in order:
        if used[i]:
            continue
        group = np.flatnonzero(~used & (cls == cls[i]))
        group = group[intersection_over_smaller(xyxy[i], xyxy[group]) >= ios]
        used[group] = True
        used[i] = True
        u = np.concatenate([xyxy[group, :2].min(0), xyxy[group, 2:].max(0)]) if len(group) else xyxy[i]
        out_boxes.append([float(u[0]), float(u[1]), float(u[2] - u[0]), float(u[3] - u[1])])
        out_cls.append(int(cls[i]))
        out_scores.append(float(score[i]))
    keep = slice(None) if max_det is None else slice(0, max_det)
    return Detections(out_boxes[keep], out_cls[keep], out_scores[keep])


def sliced_predict(adapter: DetectorAdapter, checkpoint: Path, images: list[Path], *, size: int, overlap: float,
                   merge_ios: float, max_det: int, **predict_kw) -> list[Detections]:
    """One merged Detections per full image, in order."""
    found: list[tuple[list, list, list]] = [([], [], []) for _ in images]
    with tempfile.TemporaryDirectory(prefix="wildtrain-slices-") as tmp:
        pending: list[tuple[int, tuple[int, int, int, int], Path]] = []

        def flush() -> None:
            dets = adapter.predict(checkpoint, [p for _, _, p in pending], max_det=max_det, **predict_kw)
            for (i, win, path), det in zip(pending, dets):
                for box, c, s in zip(det.boxes, det.classes, det.scores):
                    found[i][0].append([box[0] + win[0], box[1] + win[1], box[2], box[3]])
                    found[i][1].append(c)
                    found[i][2].append(s)
                path.unlink()
            pending.clear()

        for i, image in enumerate(images):
            with Image.open(image) as img:
                img = img.convert("RGB")
                for k, win in enumerate(windows(img.width, img.height, size, overlap)):
                    path = Path(tmp) / f"{i}_{k}.bmp"  # uncompressed: lossless and cheap to write
                    img.crop(win).save(path)
                    pending.append((i, win, path))
            if len(pending) >= TILES_PER_CALL:
                flush()
        if pending:
            flush()
    return [merge(b, c, s, merge_ios, max_det) for b, c, s in found]
