"""Semantic segmentation scored from one pixel confusion matrix: per-class IoU and Dice (= F1), their means,
pixel accuracy, and PNGs for humans (the confusion matrix; image | truth | prediction for a few test images).

Conventions: confusion[actual, predicted] counts labelled pixels (ignored ones are not scored). A class absent
from both the truth and the prediction has no IoU or Dice (null, not 0 or 1) and is left out of the means:
nothing was there to get right or wrong. A class present in either side scores normally (0 when missed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wildtrain.data.masks import IGNORE
from wildtrain.evaluate.bootstrap import ConfusionTable
from wildtrain import contract
from wildtrain.io import write_json

CONFUSION, EXAMPLES, IOU_PLOT = "segmenter_confusion", "segmenter_examples.png", "segmenter_iou.json"  # in plots/
PALETTE = np.array(contract.PALETTE, np.uint8)


def confusion(truth: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Pixel confusion [actual, predicted] of one class map pair; IGNORE pixels of the truth are skipped."""
    valid = truth != IGNORE
    pairs = truth[valid].astype(np.int64) * num_classes + predicted[valid].astype(np.int64)
    return np.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def batch_scores(cm: np.ndarray, class_names: list[str]) -> dict[str, np.ndarray]:
    """scores() of confusion matrices [R, actual, predicted], R at once (bootstrap resamples); nan where scores()
    says None."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diagonal(cm, axis1=1, axis2=2)
    fp, fn = cm.sum(1) - tp, cm.sum(2) - tp
    support, total = cm.sum(2), cm.sum((1, 2))

    def ratio(num, den):
        return np.divide(num, den, out=np.full_like(num, np.nan), where=den > 0)

    iou, dice = ratio(tp, tp + fp + fn), ratio(2 * tp, 2 * tp + fp + fn)
    defined = ~np.isnan(iou)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {"miou": ratio(np.where(defined, iou, 0).sum(1), defined.sum(1).astype(np.float64)),
               "dice_macro": ratio(np.where(defined, dice, 0).sum(1), defined.sum(1).astype(np.float64)),
               "pixel_accuracy": ratio(tp.sum(1), total),
               "fw_iou": ratio((support * np.where(defined, iou, 0)).sum(1), support.sum(1))}
    for k, c in enumerate(class_names):
        out[f"per_class.{c}.iou"], out[f"per_class.{c}.dice"] = iou[:, k], dice[:, k]
    return out


class SegmentationTable(ConfusionTable):
    """Per test image (or group), its pixel confusion matrix."""

    kind = "segmentation"

    def score(self, cm: np.ndarray) -> dict[str, np.ndarray]:
        return batch_scores(cm, self.class_names)


def scores(matrix: np.ndarray, class_names: list[str] | None = None) -> dict:
    """IoU = TP / (TP + FP + FN), Dice = 2TP / (2TP + FP + FN) per class; mIoU and macro Dice over the classes
    that have any pixel in truth or prediction; pixel accuracy; frequency-weighted IoU (by true pixels)."""
    cm = np.asarray(matrix, dtype=np.int64)
    names = class_names or [str(k) for k in range(len(cm))]
    batch = batch_scores(cm[None], names)

    def value(key: str) -> float | None:
        v = float(batch[key][0])
        return None if np.isnan(v) else v

    tp = np.diag(cm)
    precision, recall = (np.divide(tp, d, out=np.full(len(tp), np.nan), where=d > 0) for d in (cm.sum(0), cm.sum(1)))
    return {
        "miou": value("miou"), "dice_macro": value("dice_macro"), "pixel_accuracy": value("pixel_accuracy"),
        "fw_iou": value("fw_iou"),
        "per_class": {n: {"iou": value(f"per_class.{n}.iou"), "dice": value(f"per_class.{n}.dice"),
                          "precision": None if np.isnan(p) else float(p), "recall": None if np.isnan(r) else float(r),
                          "pixels": int(s)}
                      for n, p, r, s in zip(names, precision, recall, cm.sum(1))},
    }


def confusion_rows(matrix: np.ndarray, class_names: list[str]) -> list[dict]:
    """One row per (actual, predicted) pair with its pixel count: the shape of the `confusion_pixels` DVC
    template (.dvc/plots), which sums `pixels` where DVC's own confusion template counts rows."""
    return [{"actual": a, "predicted": p, "pixels": int(matrix[i, j])}
            for i, a in enumerate(class_names) for j, p in enumerate(class_names)]


def colour(class_map: np.ndarray) -> np.ndarray:
    """A class map as RGB (IGNORE grey)."""
    out = PALETTE[class_map % len(PALETTE)]
    out[class_map == IGNORE] = (128, 128, 128)
    return out


def overlay(image: np.ndarray, class_map: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The image with each non-background class painted over it."""
    painted = image.astype(np.float32).copy()
    fg = (class_map > 0) & (class_map != IGNORE)
    painted[fg] = (1 - alpha) * painted[fg] + alpha * colour(class_map)[fg]
    return painted.astype(np.uint8)


def confusion_png(path: Path, matrix: np.ndarray, class_names: list[str]) -> None:
    """Row-normalized (what fraction of each true class went where), with pixel counts."""
    from wildtrain.evaluate.plots import _pyplot, save_png

    plt = _pyplot()
    cm = np.asarray(matrix, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1.2 * n + 2.5, 1.1 * n + 2))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set(xticks=range(n), yticks=range(n), xlabel="predicted", ylabel="actual",
           title="Pixels by true class (row %, count)")
    ax.set_xticklabels(class_names, rotation=45, ha="right")
    ax.set_yticklabels(class_names)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{norm[i, j]:.0%}\n{int(cm[i, j]):,}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    fig.tight_layout()
    save_png(fig, path)


def examples_png(path: Path, rows: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
                 class_names: list[str]) -> None:
    """image | ground truth | prediction overlay, one row per (name, image, truth, predicted)."""
    from wildtrain.evaluate.plots import _pyplot, save_png

    plt = _pyplot()
    fig, axes = plt.subplots(max(1, len(rows)), 3, figsize=(9, 3 * max(1, len(rows))), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for (name, image, truth, pred), (a, b, c) in zip(rows, axes):
        miou = scores(confusion(truth, pred, len(class_names)))["miou"]
        a.imshow(image)
        a.set_title(name[-40:], fontsize=8)
        b.imshow(overlay(image, truth))
        b.set_title("ground truth", fontsize=8)
        c.imshow(overlay(image, pred))
        c.set_title(f"prediction (IoU {miou:.2f})" if miou is not None else "prediction", fontsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=PALETTE[k % len(PALETTE)] / 255) for k in range(1, len(class_names))]
    fig.legend(handles, class_names[1:], loc="lower center", ncol=min(6, len(handles)), fontsize=8)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    save_png(fig, path)


def evaluate_segmenter(predictor, p, root: Path, write_outputs: bool, Split):
    """A segmenter Predictor scored on the held-out split (full images, sliced like the tiles it trained on when
    convert tiled), with bootstrap intervals over its images, and its per-image confusion table; with
    write_outputs, the confusion plot data, per-class IoU rows and the PNGs. `Split` is the family's reader of a
    split's images and masks (the family passes it: evaluation does not import the families)."""
    from wildtrain.data.coco import load_coco
    from wildtrain.data.split import unit_key
    from wildtrain.errors import WildtrainError
    from wildtrain.evaluate import bootstrap, evaluation_hash
    from wildtrain.io import sha256_file

    e, card = p.segmenter_evaluate, predictor.card
    names = card.class_names
    coco_file = root / p.paths.coco / f"{e.split}.json"
    info = load_coco(coco_file).info if coco_file.is_file() else {}
    tiling = info.get("tiling")
    if tiling:  # score the full-size images, sliced like the tiles it was trained on
        coco_file = coco_file.parent / info["full"]
    split = Split(coco_file, card.input.get("missing_masks", "boxes"))
    if split.class_names[1:] != names[1:]:
        raise WildtrainError(f"{coco_file}: the model's classes ({', '.join(names)}) differ from the split's "
                             f"({', '.join(split.class_names)}): its scores would not compare")
    options = {"batch": e.batch, "slice": tiling["size"] if tiling else "off",
               **({"overlap": tiling["overlap"]} if tiling else {})}
    n = len(names)
    matrix = np.zeros((n, n), np.int64)
    errors, by_unit = [], {}
    for start in range(0, len(split), e.batch):
        idx = list(range(start, min(start + e.batch, len(split))))
        for i, pred in zip(idx, predictor.predict([split.image(i) for i in idx], **options)):
            cm = confusion(split.mask(i), pred.mask, n)
            matrix += cm
            unit = unit_key(split.images[i])
            by_unit[unit] = by_unit.get(unit, 0) + cm
            errors.append((int(cm.sum() - np.trace(cm)), i))
    metrics = {"split": e.split, "encoder": card.architecture, "images": len(split), "sliced": bool(tiling),
               "pixels": int(matrix.sum()), **scores(matrix, names), "confusion": matrix.tolist(),
               "evaluation_hash": evaluation_hash({"annotations": sha256_file(coco_file),
                                                   "dataset": split.dataset.info.get("dataset_hash")},
                                                  {**options, "missing_masks": card.input.get("missing_masks", "boxes"),
                                                   "metric": "pixel confusion"})}
    units = sorted(by_unit)
    table = SegmentationTable(units, np.stack([by_unit[u] for u in units]) if units else np.zeros((0, n, n), np.int64),
                              names)
    metrics = bootstrap.with_intervals(metrics, table, e.bootstrap)
    if write_outputs:
        plot_dir = root / p.paths.plots
        write_json(plot_dir / f"{CONFUSION}.json", confusion_rows(matrix, names))
        write_json(plot_dir / IOU_PLOT, [{"class": c, "iou": v["iou"] or 0.0} for c, v in metrics["per_class"].items()])
        confusion_png(plot_dir / f"{CONFUSION}.png", matrix, names)
        worst = [i for _, i in sorted(errors, reverse=True)[:e.examples]]  # the images with the most wrong pixels
        rows = []
        for i in sorted(worst):
            image = split.image(i)
            pred = predictor.predict([image], **options)[0]
            rows.append((split.images[i]["file_name"], image, split.mask(i), pred.mask))
        examples_png(plot_dir / EXAMPLES, rows, names)
        metrics["examples"] = [r[0] for r in rows]
    return metrics, table

