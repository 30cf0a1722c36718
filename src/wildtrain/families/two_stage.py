"""Detector + species classifier as one model: the detector finds the animals, the classifier names the species.

Each detected box is cut out exactly as `convert` cut the classifier's training crops (same padding and
minimum size, from the full image), classified, and relabelled with the classifier's species; its score
becomes detector score x classifier probability. Boxes the classifier calls `background` are dropped — the
classifier removes the detector's false positives. A two-stage model folder holds both models' folders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from wildtrain.data.crops import BACKGROUND, crop_box
from wildtrain.errors import WildtrainError
from wildtrain.contract import Detections, Exported, ModelCard, check_options
from wildtrain.io import link_or_copy, replaced_dir
from wildtrain.layout import MODEL_CARD

DETECTOR, CLASSIFIER = "detector", "classifier"  # sub-folders of a two-stage model folder
PER_RUN = ("mlflow_run_id", "epochs_completed", "resumed", "family")  # the parts' own; the data lineage is shared


class TwoStagePredictor:
    def __init__(self, card: ModelCard, detector, classifier):
        self.card, self.detector, self.classifier = card, detector, classifier
        crop = classifier.card.input.get("crop") or {}
        if "padding" not in crop or "min_size" not in crop:
            raise WildtrainError(f"{CLASSIFIER}: the classifier's card does not say how its crops were cut "
                                 f"(input.crop padding/min_size); retrain it with this version")
        self.padding, self.min_size = float(crop["padding"]), int(crop["min_size"])
        self.species = [card.class_names.index(n) if n in card.class_names else -1
                        for n in classifier.card.class_names]  # classifier index -> our class (-1: background)

    def options(self) -> dict:
        return {**self.detector.options(), "classifier_batch": 64}

    def predict(self, images: Sequence[np.ndarray], **options) -> list[Detections]:
        o = check_options(options, self.options(), "two-stage predict")
        batch = o.pop("classifier_batch")
        found = self.detector.predict(images, **o)
        crops = []
        for image, det in zip(images, found):
            h, w = image.shape[:2]
            for box in det.boxes:
                left, top, right, bottom = crop_box(box, w, h, self.padding, self.min_size)
                crops.append(image[top:bottom, left:right])
        return self.relabel(found, self.classifier.predict(crops, batch=batch) if crops else [])

    def classify_regions(self, det: Detections, width: int, height: int,
                         read: Callable[[list[tuple[int, int, int, int]]], list[np.ndarray]], batch: int) -> Detections:
        """The merged boxes of a streamed raster (width x height px), relabelled as `predict` relabels an image's.

        A raster is detected window by window, but each box is cut from the whole raster (`read` gives the pixels
        of (left, top, right, bottom) regions) after the windows' boxes are merged: a box near a window's edge gets
        the same padded crop as anywhere else, and an animal cut by a window border is classified once, whole.
        Crops are read `batch` at a time, the classifier's batches, so memory does not grow with the animals."""
        regions = [crop_box(box, width, height, self.padding, self.min_size) for box in det.boxes]
        labels = []
        for start in range(0, len(regions), max(1, batch)):
            labels += self.classifier.predict(read(regions[start:start + batch]), batch=batch)
        return self.relabel([det], labels)[0]

    def relabel(self, found: list[Detections], labels: Sequence) -> list[Detections]:
        """Each box with its classifier label (one per box, in order): the species, score detector x classifier,
        best first; boxes the classifier calls background dropped."""
        labels = iter(labels)
        out = []
        for det in found:
            kept = []
            for box, score in zip(det.boxes, det.scores):
                c = next(labels)
                species = self.species[c.label]
                if species >= 0:
                    kept.append((score * c.scores[c.label], box, species))
            kept.sort(key=lambda k: -k[0])
            out.append(Detections([b for _, b, _ in kept], [s for _, _, s in kept], [float(v) for v, _, _ in kept],
                                  det.windows, det.capped))
        return out


def compose(detector_dir: Path, classifier_dir: Path, out: Path, extra: dict | None = None) -> Path:
    """A self-contained two-stage model folder: both model folders (hard-linked where possible) and a card."""
    det, cls = ModelCard.load(detector_dir), ModelCard.load(classifier_dir)
    if det.family != "detector" or cls.family != "classifier":
        raise WildtrainError(f"{out}: a two-stage model needs a detector and a classifier "
                             f"(got {det.family} and {cls.family})")
    species = [n for n in cls.class_names if n != BACKGROUND]
    unknown = sorted(set(species) - set(det.class_names))
    if unknown:
        raise WildtrainError(f"{classifier_dir}: classifier species {', '.join(unknown)} are not among the detector's "
                             f"classes ({', '.join(det.class_names)})")
    with replaced_dir(out) as tmp:
        for role, src in ((DETECTOR, detector_dir), (CLASSIFIER, classifier_dir)):
            for f in sorted(p for p in src.rglob("*") if p.is_file()):
                link_or_copy(f, tmp / role / f.relative_to(src))
        ModelCard(family="two_stage", task="object-detection", framework="composite",
                  architecture=f"{det.architecture}+{cls.architecture}", class_names=det.class_names, weights="",
                  input=det.input, training={**{k: v for k, v in det.training.items() if k not in PER_RUN},
                                             DETECTOR: det.training, CLASSIFIER: cls.training},
                  hashes={DETECTOR: det.hashes, CLASSIFIER: cls.hashes},
                  components={DETECTOR: DETECTOR, CLASSIFIER: CLASSIFIER},
                  extra={**det.extra, **(extra or {})}).save(tmp)
    return out


class TwoStageFamily:
    name, task = "two_stage", "object-detection"
    train_section, evaluate_section, register_section = None, "evaluate", "two_stage"
    suffix = "_two_stage"  # metrics/eval_two_stage.json, metrics/register_two_stage.json
    requirements = ()  # served-model packages beyond the framework's
    plot_files = ("two_stage_pr_curve.png", "two_stage_confusion.png", "two_stage_gallery.png")

    def model_dir(self, p, root: Path) -> Path:
        """Composed from the pipeline's detector and classifier folders (runs/ is scratch, rebuilt each time)."""
        return compose(root / p.paths.models, root / p.paths.classifier, root / p.paths.runs / self.name / "model")

    def train(self, cfg, data, workdir, resume, on_epoch):
        raise WildtrainError("two_stage: nothing to train (train the detector and the classifier)")

    def load(self, model_dir: Path, device: str = "auto") -> TwoStagePredictor:
        from wildtrain.families.classifier import FAMILY as classifier
        from wildtrain.families.detector import FAMILY as detector

        card = ModelCard.load(model_dir)
        parts = {role: model_dir / sub for role, sub in card.components.items()}
        for role in (DETECTOR, CLASSIFIER):
            if role not in parts or not (parts[role] / MODEL_CARD).is_file():
                raise WildtrainError(f"{model_dir}: two-stage model lacks its {role} folder")
        return TwoStagePredictor(card, detector.load(parts[DETECTOR], device), classifier.load(parts[CLASSIFIER], device))

    def table_type(self):
        from wildtrain.evaluate.detection_table import DetectionTable

        return DetectionTable

    def evaluate(self, predictor: TwoStagePredictor, p, root: Path, write_outputs: bool) -> tuple:
        """The detector's evaluator on the two-stage model, and the difference from the detector alone."""
        from wildtrain.evaluate.detection import STAT_NAMES, evaluate_detector
        from wildtrain.io import read_json

        metrics, table = evaluate_detector(predictor, p, root, "two_stage_" if write_outputs else None)
        alone = root / p.paths.metrics / "eval.json"
        if write_outputs and alone.is_file():
            base = read_json(alone, "detector evaluation")
            if base.get("evaluation_hash") == metrics["evaluation_hash"]:
                metrics["vs_detector"] = {k: round(metrics[k] - base[k], 6) for k in STAT_NAMES if k in base}
        return metrics, table

    def lineage(self, p, root: Path) -> dict[str, str]:
        """The registered detector and classifier versions this model was built from (their register stages)."""
        from wildtrain.io import read_json

        tags = {}
        for role, name in ((DETECTOR, "register.json"), (CLASSIFIER, "register_classifier.json")):
            reg = read_json(root / p.paths.metrics / name, f"{role} registration")
            tags.update({f"{role}_model": reg["model_uri"], f"{role}_version": str(reg["version"]),
                         f"{role}_run_id": reg["run_id"]})
        return tags

    def export(self, model_dir: Path, out_dir: Path, p, root: Path) -> Exported:
        """Each part's exports, under its role (publishing checks each against its own PyTorch model)."""
        from wildtrain.families.classifier import FAMILY as classifier
        from wildtrain.families.detector import FAMILY as detector

        parts = {role: family.export(model_dir / role, out_dir / role, p, root)
                 for role, family in ((DETECTOR, detector), (CLASSIFIER, classifier))}
        total = [part.total_parameters for part in parts.values()]
        return Exported(parts=parts, total_parameters=None if None in total else sum(total))


FAMILY = TwoStageFamily()
