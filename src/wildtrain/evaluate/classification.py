"""Classification metrics with torchmetrics (accuracy, macro P/R/F1, per-class F1, confusion matrix),
and PNGs for humans (logged to MLflow by register): misclassified crops, and Grad-CAM heatmaps of a sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wildtrain.evaluate.bootstrap import ConfusionTable
from wildtrain.io import atomic_path, write_json

CONFUSION, MISCLASSIFIED = "classifier_confusion", "classifier_misclassified.png"  # in Paths.plots


def classification_metrics(probs: np.ndarray, labels: list[int], class_names: list[str]) -> dict:
    import torch
    import torchmetrics.functional.classification as F

    n = len(class_names)
    p, y = torch.as_tensor(probs), torch.as_tensor(labels)
    kw = {"num_classes": n}
    per_class_f1 = F.multiclass_f1_score(p, y, average="none", **kw).tolist()
    support = np.bincount(np.asarray(labels, int), minlength=n).tolist()
    return {
        "accuracy": float(F.multiclass_accuracy(p, y, average="micro", **kw)),
        "precision_macro": float(F.multiclass_precision(p, y, average="macro", **kw)),
        "recall_macro": float(F.multiclass_recall(p, y, average="macro", **kw)),
        "f1_macro": float(F.multiclass_f1_score(p, y, average="macro", **kw)),
        "per_class": {c: {"f1": float(f), "support": int(s)} for c, f, s in zip(class_names, per_class_f1, support)},
        "confusion": F.multiclass_confusion_matrix(p, y, **kw).tolist(),
    }


def batch_scores(cm: np.ndarray, class_names: list[str]) -> dict[str, np.ndarray]:
    """classification_metrics' numbers from confusion matrices [R, actual, predicted], R at once (bootstrap
    resamples): torchmetrics' definitions, a class with no true and no predicted crop left out of the macro means."""
    tp = np.diagonal(cm, axis1=1, axis2=2)
    fp, fn = cm.sum(1) - tp, cm.sum(2) - tp
    present = (tp + fp + fn) > 0

    def ratio(num, den):
        return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)

    def macro(per_class):
        return ratio(np.where(present, per_class, 0.0).sum(1), present.sum(1).astype(np.float64))

    f1 = ratio(2 * tp, 2 * tp + fp + fn)
    out = {"accuracy": ratio(tp.sum(1), cm.sum((1, 2))), "precision_macro": macro(ratio(tp, tp + fp)),
           "recall_macro": macro(ratio(tp, tp + fn)), "f1_macro": macro(f1)}
    out.update({f"per_class.{c}.f1": f1[:, k] for k, c in enumerate(class_names)})
    return out


class ClassificationTable(ConfusionTable):
    """Per test image (the crops cut from it), the crops' confusion matrix."""

    kind = "classification"

    def score(self, cm: np.ndarray) -> dict[str, np.ndarray]:
        return batch_scores(cm, self.class_names)


def confusion_rows(predicted: list[int], labels: list[int], class_names: list[str]) -> list[dict]:
    """One row per sample, the shape DVC's confusion template reads."""
    return [{"actual": class_names[a], "predicted": class_names[b]} for a, b in zip(labels, predicted)]


def misclassified_png(path: Path, files: list[Path], labels: list[int], probs: np.ndarray, class_names: list[str],
                      limit: int) -> int:
    """The `limit` most confidently wrong crops, with truth and prediction; returns how many were wrong."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    pred = probs.argmax(1)
    wrong = [i for i in np.argsort(-probs.max(1)) if pred[i] != labels[i]]
    shown = wrong[:limit]
    cols = max(1, min(4, len(shown)))
    rows = max(1, -(-len(shown) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, shown):
        with Image.open(files[i]) as im:
            ax.imshow(im.convert("RGB"))
        ax.set_title(f"true {class_names[labels[i]]}\npred {class_names[pred[i]]} {probs[i].max():.2f}", fontsize=8)
    if not shown:
        axes[0, 0].text(0.5, 0.5, "no misclassified crops", ha="center", va="center")
    fig.suptitle(f"{len(wrong)} of {len(labels)} crops misclassified", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return len(wrong)


def crop_units(crops_root: Path, split: str, files: list[Path]) -> list[str]:
    """Each crop's resampling unit: the unit of the image it was cut from (data/crops/units.json, by image stem; crops
    of one image are not independent), else the crop itself (crops from before convert recorded units)."""
    from wildtrain.io import read_json
    from wildtrain.layout import CROPS_UNITS

    info = crops_root / CROPS_UNITS
    by_stem = (read_json(info, "crop units") if info.is_file() else {}).get(split) or {}
    units = [by_stem.get(f.stem.rsplit("_", 1)[0]) for f in files]
    if None in units:
        return [f"crop:{f.parent.name}/{f.name}" for f in files]
    return units


def evaluate_classifier(predictor, p, root: Path, write_outputs: bool, scan_split) -> tuple:
    """A classifier Predictor scored on the held-out crops, with bootstrap intervals over their source images, and
    its per-image confusion table; with write_outputs, the confusion plot data and PNGs. `scan_split` is the
    family's reader of a crops folder (the family passes it: evaluation does not import the families)."""
    from wildtrain.data.images import load_rgb
    from wildtrain.evaluate import bootstrap, plots
    from wildtrain.evaluate import evaluation_hash
    from wildtrain.tracking.lineage import dataset_hash, hash_tree

    e, card = p.classifier_evaluate, predictor.card
    names = card.class_names
    folder = root / p.paths.crops / e.split
    split = scan_split(folder, names, require_all=False)
    probs = np.concatenate([np.asarray([c.scores for c in predictor.predict(
        [load_rgb(f) for f in split.files[i:i + e.batch]], batch=e.batch)]) for i in range(0, len(split.files), e.batch)])
    metrics = {"split": e.split, "backbone": card.architecture, "crops": len(split.files),
               **classification_metrics(probs, split.labels, names),
               "evaluation_hash": evaluation_hash({"crops": dataset_hash(hash_tree(folder))}, {"split": e.split})}
    table = ClassificationTable.from_labels(crop_units(root / p.paths.crops, e.split, split.files),
                                            np.asarray(split.labels), probs.argmax(1), names)
    metrics = bootstrap.with_intervals(metrics, table, e.bootstrap)
    if write_outputs:
        plot_dir = root / p.paths.plots
        rows = confusion_rows(probs.argmax(1).tolist(), split.labels, names)
        write_json(plot_dir / f"{CONFUSION}.json", rows)
        plots.confusion_png(plot_dir / f"{CONFUSION}.png", rows, names)
        metrics["misclassified"] = misclassified_png(plot_dir / MISCLASSIFIED, split.files, split.labels, probs, names,
                                                     e.misclassified)
        if e.explain:
            from wildtrain.evaluate.explain import EXPLANATIONS, explain

            metrics.update(explain(predictor, split.files, split.labels, probs, e.explain, plot_dir / EXPLANATIONS))
    return metrics, table
