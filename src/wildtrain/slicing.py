"""Sliced inference on large images: cut each image into overlapping windows (in memory), predict the windows of
many images in shared batches, shift boxes back, merge (boxes) or blend (class probabilities of masks).

Merging is greedy non-maximum merging by intersection over the smaller box (as in SAHI's GREEDYNMM): an
animal cut by a window border is seen whole in one window and in part in its neighbour; the part lies
inside the whole (IoS ~ 1, though its IoU may be only 0.5), so it is merged into one box — the union —
instead of surviving plain NMS as a duplicate. Windows are the ones `convert` tiles with (data.tiling), so a
model sees at prediction time exactly the kind of tiles it was trained on.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from wildtrain.data.tiling import windows
from wildtrain.contract import Detections

AUTO_MARGIN = 1.25  # slice an image only when its long side exceeds the model's training image size by this much


def slice_size(option: str | int, image_shape: tuple[int, ...], train_size: int) -> int | None:
    """The window side for one image, or None to predict it whole. `option`: auto | off | a size in px."""
    text = str(option).strip().lower()
    if text == "off":
        return None
    if text == "auto":
        return train_size if train_size and max(image_shape[:2]) > AUTO_MARGIN * train_size else None
    if not text.isdigit() or int(text) < 32:
        raise ValueError(f"slice: expected auto, off or a size in px (>= 32), got '{option}'")
    size = int(text)
    return size if max(image_shape[:2]) > size else None


def intersection_over_smaller(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoS between one xyxy box and N xyxy boxes."""
    iw = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    smaller = np.minimum(area(box), area(others))
    return np.where(smaller > 0, iw * ih / np.maximum(smaller, 1e-12), 0.0)


def merge(boxes: list[list[float]], classes: list[int], scores: list[float], ios: float) -> Detections:
    """Greedy merge per class: the best box absorbs same-class boxes overlapping it by >= ios (of the smaller).

    No cap on the total: a census of a large image may hold any number of animals (the model's max_det limits each
    window). Boxes are found through a grid of cells, so only neighbours are compared: a merge of N boxes costs
    about N, not N², and gives exactly what comparing every pair gives (boxes that intersect share a cell)."""
    if not boxes:
        return Detections([], [], [])
    xywh = np.asarray(boxes, dtype=np.float64)
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    kept = greedy_merge(xyxy, np.asarray(classes), np.asarray(scores, dtype=np.float64), ios)
    return Detections([[float(u[0]), float(u[1]), float(u[2] - u[0]), float(u[3] - u[1])] for _, u in kept],
                      [int(classes[i]) for i, _ in kept], [float(scores[i]) for i, _ in kept])


def greedy_merge(xyxy: np.ndarray, cls: np.ndarray, score: np.ndarray, ios: float) -> list[tuple[int, np.ndarray]]:
    """(index of the box that absorbed its group, the group's union xyxy) per merged box, best score first."""
    near = neighbours(xyxy)
    used = np.zeros(len(xyxy), bool)
    kept = []
    for i in np.argsort(-score, kind="stable"):
        if used[i]:
            continue
        group = near(i)
        group = group[~used[group] & (cls[group] == cls[i])]
        group = group[intersection_over_smaller(xyxy[i], xyxy[group]) >= ios]
        used[group] = True
        used[i] = True
        kept.append((int(i), np.concatenate([xyxy[group, :2].min(0), xyxy[group, 2:].max(0)]) if len(group)
                     else xyxy[i]))
    return kept


def neighbours(xyxy: np.ndarray) -> Callable[[int], np.ndarray]:
    """i -> the indices of the boxes that share a grid cell with box i (itself included), in index order."""
    sides = np.maximum(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1])
    cell = max(1.0, 2.0 * float(np.percentile(sides, 90)))
    lo = np.floor(xyxy[:, :2] / cell).astype(np.int64)
    hi = np.floor(xyxy[:, 2:] / cell).astype(np.int64)
    cells: dict[tuple[int, int], list[int]] = {}
    for i, (x0, y0, x1, y1) in enumerate(np.concatenate([lo, hi], axis=1).tolist()):
        for cx in range(x0, x1 + 1):
            for cy in range(y0, y1 + 1):
                cells.setdefault((cx, cy), []).append(i)

    def near(i: int) -> np.ndarray:
        (x0, y0), (x1, y1) = lo[i], hi[i]
        found = [cells[(cx, cy)] for cx in range(x0, x1 + 1) for cy in range(y0, y1 + 1)]
        return np.unique(np.concatenate(found)) if len(found) > 1 else np.asarray(found[0])

    return near


def predict_sliced(predict: Callable[[list[np.ndarray]], list[Detections]], images: Sequence[np.ndarray],
                   sizes: Sequence[int | None], *, overlap: float, merge_ios: float, max_det: int,
                   batch: int) -> list[Detections]:
    """One Detections per image, in order. Image i is cut into windows of sizes[i] (None: predicted whole);
    windows of all images share batches of `batch` arrays (views into the images, nothing written). `max_det`
    is what `predict` limits each window to: a window that returned that many is counted as capped."""
    pieces: list[tuple[int, int, int, np.ndarray]] = []  # image index, x offset, y offset, view
    for i, (image, size) in enumerate(zip(images, sizes)):
        h, w = image.shape[:2]
        for left, top, right, bottom in ([(0, 0, w, h)] if size is None else windows(w, h, size, overlap)):
            pieces.append((i, left, top, image[top:bottom, left:right]))
    found: list[tuple[list, list, list]] = [([], [], []) for _ in images]
    passes, capped = [0] * len(images), [0] * len(images)
    for start in range(0, len(pieces), max(1, batch)):
        chunk = pieces[start:start + batch]
        for (i, dx, dy, _), det in zip(chunk, predict([view for *_, view in chunk])):
            boxes, classes, scores = found[i]
            boxes += [[b[0] + dx, b[1] + dy, b[2], b[3]] for b in det.boxes]
            classes += det.classes
            scores += det.scores
            passes[i] += 1
            capped[i] += int(len(det.boxes) >= max_det)
    out = []
    for (boxes, classes, scores), size, n, hit in zip(found, sizes, passes, capped):
        if size is None:  # one whole-image prediction: already NMSed by the model
            out.append(Detections(boxes, classes, scores, n, hit))
        else:
            merged = merge(boxes, classes, scores, merge_ios)
            out.append(Detections(merged.boxes, merged.classes, merged.scores, n, hit))
    return out


def blend_weight(height: int, width: int, ramp: int) -> np.ndarray:
    """A window's weight per pixel: 1 inside, falling linearly to almost 0 over `ramp` px towards each edge.

    Where two windows overlap, one fades out as the other fades in, so their blend changes smoothly from one to
    the other: no seam where a window ends. Never 0, so a pixel only one window sees keeps that window's answer."""
    def ramp_1d(n: int) -> np.ndarray:
        t = np.arange(n, dtype=np.float32)
        edge = np.minimum(t, n - 1 - t) + 1.0
        return np.clip(edge / (ramp + 1.0), 1e-3, 1.0)

    return ramp_1d(height)[:, None] * ramp_1d(width)[None, :]


def argmax(probabilities: np.ndarray) -> np.ndarray:
    """(classes, h, w) scores -> the h x w uint8 class map."""
    return probabilities.argmax(0).astype(np.uint8)


def predict_blended(probabilities: Callable[[list[np.ndarray]], list[np.ndarray]], images: Sequence[np.ndarray],
                    sizes: Sequence[int | None], *, overlap: float, batch: int,
                    finish: Callable[[np.ndarray], np.ndarray] = argmax) -> list[np.ndarray]:
    """finish(blended class probabilities) per image, in order: by default its HxW uint8 class map.

    `probabilities` maps RGB arrays to (classes, h, w) float arrays of the same sizes. Image i is predicted whole
    (sizes[i] None) or in windows of sizes[i], its windows' probabilities averaged with blend_weight; windows
    of all images share batches of `batch`. An image's accumulator lives only while it has windows in flight,
    so the peak is one large image's probabilities, not every image's."""
    pieces: list[tuple[int, tuple[int, int, int, int], np.ndarray]] = []  # image index, window, view
    for i, (image, size) in enumerate(zip(images, sizes)):
        h, w = image.shape[:2]
        for win in ([(0, 0, w, h)] if size is None else windows(w, h, size, overlap)):
            pieces.append((i, win, image[win[1]:win[3], win[0]:win[2]]))
    remaining = [0] * len(images)
    for i, _, _ in pieces:
        remaining[i] += 1
    out: list[np.ndarray | None] = [None] * len(images)
    acc: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for start in range(0, len(pieces), max(1, batch)):
        chunk = pieces[start:start + batch]
        for (i, win, _), probs in zip(chunk, probabilities([view for *_, view in chunk])):
            if sizes[i] is None:
                out[i] = finish(probs)
                continue
            if i not in acc:
                h, w = images[i].shape[:2]
                acc[i] = (np.zeros((probs.shape[0], h, w), np.float32), np.zeros((h, w), np.float32))
            total, weight = acc[i]
            left, top, right, bottom = win
            wgt = blend_weight(bottom - top, right - left, max(1, int(round(sizes[i] * overlap))))
            total[:, top:bottom, left:right] += probs * wgt
            weight[top:bottom, left:right] += wgt
            remaining[i] -= 1
            if remaining[i] == 0:
                total /= weight
                out[i] = finish(total)
                del acc[i]
    return out
