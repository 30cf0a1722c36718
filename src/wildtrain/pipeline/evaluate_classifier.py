"""Stage `evaluate_classifier`: predict the held-out crops, score them, write the confusion plot data."""

from __future__ import annotations

from pathlib import Path

from wildtrain.evaluate import plots
from wildtrain.evaluate.classification import classification_metrics, confusion_rows, misclassified_png
from wildtrain.io import read_json, write_json
from wildtrain.params import Params
from wildtrain.pipeline.train_classifier import CLASSIFIER_INFO

EVAL_FILE = "eval_classifier.json"
CONFUSION, MISCLASSIFIED = "classifier_confusion", "classifier_misclassified.png"


def evaluate_classifier(p: Params, root: Path) -> dict:
    from wildtrain.classifier.data import scan_split
    from wildtrain.classifier.inference import load_model, predict

    e = p.classifier_evaluate
    model_dir = root / p.paths.classifier
    info = read_json(model_dir / CLASSIFIER_INFO, "classifier info")
    names = info["class_names"]
    split = scan_split(root / p.paths.crops / e.split, names, require_all=False)
    probs = predict(load_model(info, model_dir), split.files, info["imgsz"], e.batch, e.device)
    metrics = {"split": e.split, "backbone": info["backbone"], "crops": len(split.files),
               **classification_metrics(probs, split.labels, names)}
    plot_dir = root / p.paths.plots
    rows = confusion_rows(probs.argmax(1).tolist(), split.labels, names)
    write_json(plot_dir / f"{CONFUSION}.json", rows)
    plots.confusion_png(plot_dir / f"{CONFUSION}.png", rows, names)
    metrics["misclassified"] = misclassified_png(plot_dir / MISCLASSIFIED, split.files, split.labels, probs, names,
                                                 e.misclassified)
    write_json(root / p.paths.metrics / EVAL_FILE, metrics)
    print(f"evaluate_classifier: {e.split} accuracy {metrics['accuracy']:.4f}, macro F1 {metrics['f1_macro']:.4f} "
          f"on {len(split.files)} crops")
    return metrics
