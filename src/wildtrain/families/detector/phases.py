"""The YOLO detector trained in phases (`train.phases`), with hard negatives mined between phases.

Aerial surveys are mostly empty ground: a first phase may train on the images with animals only (backbone
frozen), a later one on all of them with more empty images and a lower learning rate. Each phase is one
Ultralytics training in its own folder of the work folder (`phase1/`, `phase2/`, ...), started from the previous
phase's best weights (the first from train.model), on a dataset YAML of its own whose `train:` is a list of image
paths in convert's YOLO layout (Ultralytics finds each image's labels by its images -> labels rule); val and test
are the pipeline's. A phase's keys override train's; keys it leaves out take train's value (not the previous
phase's).

Which empty images (no boxes, as convert kept them) a phase sees: one permutation of them by train.seed, of which a
phase takes the first round(empty_ratio x count), so phases with a growing ratio see nested sets. With
`mine: {score: s}`, the phase's best weights then predict (YoloNet, the pipeline's own predictor) the empty images
the next phase would not include; those with a detection at score >= s are added to the next phase as negatives
(`phaseK/mined.json`, MLflow metric `phaseK_mined`, the model card's `extra.phases`).

Resume: a phase's record is added to `phases.json` in the work folder once it is trained (and its negatives mined);
a resumed training skips the recorded phases and continues the interrupted one from its own last.pt through
Ultralytics' resume. Epochs are numbered on across phases (phase 2's first epoch follows phase 1's last), and each
epoch's metrics carry `phase` (1, 2, ...).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

from wildtrain.errors import WildtrainError
from wildtrain.contract import EpochCallback, ModelCard, Trained, TrainData, tensors_sha256
from wildtrain.io import read_json, read_yaml, write_json, write_text, write_yaml

STATE = "phases.json"  # in the work folder: the records of the phases trained so far
MINED = "mined.json"  # in a phase's folder: the hard negatives it found for the next phase
START = "start.json"  # in a phase's folder: the hash of the weights it started from
OVERRIDES = ("epochs", "lr0", "lrf", "freeze", "imgsz", "mosaic", "close_mosaic", "batch", "optimizer",
             "warmup_epochs")
MINE_BATCH = 16
MINE_IOU = 0.7


@dataclass(frozen=True)
class TrainImages:
    """The training images in convert's YOLO layout: those with boxes, and the empty ones in train.seed's order."""

    positives: list[Path]
    empties: list[Path]


def train_images(data: TrainData, seed: int) -> TrainImages:
    from wildtrain.data.coco import load_coco

    ds = load_coco(data.coco["train"])
    folder = data.yolo_yaml.parent / "images" / "train"
    by_image = ds.annotations_by_image()
    positives, empties = [], []
    for im in ds.images:
        (positives if by_image[im["id"]] else empties).append(folder / im["file_name"].replace("/", "__"))
    missing = next((f for f in positives + empties if not f.is_file()), None)
    if missing is not None:
        raise WildtrainError(f"{missing}: not in the YOLO layout of {data.coco['train']} (dvc repro convert)")
    empties.sort()
    random.Random(seed).shuffle(empties)
    return TrainImages(sorted(positives), empties)


def select_empty(images: TrainImages, ratio: float) -> list[Path]:
    """The empty images a phase with `empty_ratio` sees: the first round(ratio x count) in the seed's order."""
    return images.empties[:round(ratio * len(images.empties))]


def phase_images(images: TrainImages, ratio: float, negatives: Sequence[Path] = ()) -> list[Path]:
    """A phase's training images: every image with boxes, its share of the empty ones, and mined negatives."""
    empties = list(dict.fromkeys([*select_empty(images, ratio), *negatives]))
    return images.positives + empties


def write_phase_dataset(folder: Path, data: TrainData, images: Sequence[Path]) -> Path:
    """`train.txt` (absolute image paths) + `dataset.yaml` (val/test the pipeline's) in a phase's folder."""
    base = read_yaml(data.yolo_yaml, "YOLO dataset file")
    listing = folder / "train.txt"
    write_text(listing, "".join(f"{p}\n" for p in images))
    yaml_path = folder / "dataset.yaml"
    write_yaml(yaml_path, {"path": str(data.yolo_yaml.parent), "train": str(listing),
                           **{k: base[k] for k in ("val", "test") if k in base}, "names": base["names"]})
    return yaml_path


class Net(Protocol):
    def predict(self, images, *, conf: float, iou: float, max_det: int) -> list: ...


def hard_negatives(net: Net, candidates: Sequence[Path], score: float, batch: int = MINE_BATCH) -> list[Path]:
    """The candidate (empty) images where `net` detects anything at score >= `score`: false positives."""
    from wildtrain.data.images import load_rgb

    hits = []
    for i in range(0, len(candidates), batch):
        chunk = candidates[i:i + batch]
        for path, det in zip(chunk, net.predict([load_rgb(p) for p in chunk], conf=score, iou=MINE_IOU, max_det=1)):
            if any(s >= score for s in det.scores):
                hits.append(path)
    return hits


def _half_hash(model) -> str:
    """The tensors' hash of a model as Ultralytics saves it in best.pt/last.pt (floating tensors in half)."""
    import torch

    return tensors_sha256({k: v.half() if torch.is_floating_point(v) else v for k, v in model.state_dict().items()})


def _record_start(folder: Path):
    def record(trainer) -> None:
        write_json(folder / START, {"tensors_sha256": _half_hash(trainer.model)})

    return record


def _log_mined(n: int, count: int, listing: Path) -> None:
    import mlflow

    if mlflow.active_run() is not None:  # the train stage's run (none in tests calling the trainer directly)
        mlflow.log_metric(f"phase{n}_mined", count)
        mlflow.log_artifact(str(listing), artifact_path=f"phases/phase{n}")


def _finished(last: Path) -> bool:
    """Whether this last.pt holds a phase's last epoch: marked epoch -1 by Ultralytics' final step, or saved at the
    last epoch and killed before that step (Ultralytics refuses to resume either: "nothing to resume")."""
    import torch

    ckpt = torch.load(last, map_location="cpu", weights_only=False)  # this run's own file
    epoch = ckpt.get("epoch", -1)
    epochs = (ckpt.get("train_args") or {}).get("epochs")
    return epoch == -1 or (epochs is not None and epoch + 1 >= int(epochs))


def _finished_record(folder: Path, args: dict) -> dict:
    import csv

    with open(folder / "results.csv", newline="") as f:
        epochs = sum(1 for _ in csv.DictReader(f))
    best = folder / "weights" / "best.pt"
    start = read_json(folder / START) if (folder / START).is_file() else {}
    return {"epochs_completed": epochs, "best": str((best if best.is_file() else folder / "weights" / "last.pt")
                                                    .relative_to(folder)),
            "best_fitness": 0.0, "imgsz": int(args["imgsz"]), "start_tensors_sha256": start.get("tensors_sha256")}


def _train_phase(model_source: str, args: dict, folder: Path, resume: bool, on_epoch: EpochCallback | None
                 ) -> tuple[dict, bool]:
    """One Ultralytics training in `folder` (fresh, or resumed from its own last.pt); returns its record."""
    from ultralytics import YOLO

    from wildtrain.families.detector.yolo import fit

    last = folder / "weights" / "last.pt"
    resume = resume and last.is_file()
    if resume and _finished(last):  # trained to its end, killed before its record was written: not retrained
        return _finished_record(folder, args), True
    model = YOLO(str(last) if resume else model_source)
    if not resume:
        model.add_callback("on_pretrain_routine_end", _record_start(folder))
    reported = fit(model, args, last if resume else None, folder, on_epoch)
    trainer = model.trainer
    best = Path(trainer.best) if Path(trainer.best).is_file() else Path(trainer.last)
    start = read_json(folder / START) if (folder / START).is_file() else {}
    return {"epochs_completed": max(reported, default=int(trainer.epoch)) + 1, "best": str(best.relative_to(folder)),
            "best_fitness": float(trainer.best_fitness or 0.0), "imgsz": int(args["imgsz"]),
            "start_tensors_sha256": start.get("tensors_sha256")}, resume


def _mine(n: int, cfg, phase, next_phase, images: TrainImages, best: Path, imgsz: int, data: TrainData,
          folder: Path) -> dict:
    from wildtrain.families.detector.yolo import WEIGHTS, YoloNet, slim_checkpoint

    include = set(select_empty(images, next_phase.empty_ratio))
    candidates = [p for p in images.empties if p not in include]
    found: list[Path] = []
    if candidates:
        slim_checkpoint(best, folder / "mining" / WEIGHTS, imgsz)
        card = ModelCard(family="detector", task="object-detection", framework="yolo", architecture="",
                         class_names=data.class_names, weights=WEIGHTS, input={"size": imgsz})
        found = hard_negatives(YoloNet(folder / "mining", card, cfg.device), candidates, phase.mine.score)
    listing = folder / MINED
    write_json(listing, {"phase": n, "score": phase.mine.score, "candidates": len(candidates),
                         "mined": [p.name for p in found]})
    _log_mined(n, len(found), listing)
    print(f"train: phase {n} mined {len(found)} hard negatives of {len(candidates)} empty images for phase {n + 1}")
    return {"score": phase.mine.score, "candidates": len(candidates), "mined": len(found),
            "mined_images": [p.name for p in found]}


def train(cfg, data: TrainData, workdir: Path, resume: bool, on_epoch: EpochCallback | None) -> Trained:
    import shutil

    from wildtrain.env import configure_ultralytics
    from wildtrain.families.detector.yolo import WEIGHTS, slim_checkpoint, resolve_model_source, train_args

    configure_ultralytics()
    source = resolve_model_source(cfg.model, data.root)
    images = train_images(data, cfg.seed)
    state_file = workdir / STATE
    done = read_json(state_file, "phases state")["phases"] if resume and state_file.is_file() else []
    if not resume:  # a fresh training: another training's phase folders are never resumed from
        state_file.unlink(missing_ok=True)
        for k in range(len(cfg.phases)):
            shutil.rmtree(workdir / f"phase{k + 1}", ignore_errors=True)
    total, offset, start, negatives = len(cfg.phases), 0, source, []
    resumed = bool(done)
    for k, phase in enumerate(cfg.phases):
        n, folder = k + 1, workdir / f"phase{k + 1}"
        args = {**train_args(cfg, data, workdir),
                **{key: getattr(phase, key) for key in OVERRIDES if getattr(phase, key) is not None}}
        if k < len(done):
            record = done[k]
            print(f"train: phase {n}/{total} was trained before ({folder}), not retrained")
        else:
            chosen = phase_images(images, phase.empty_ratio, negatives)
            folder.mkdir(parents=True, exist_ok=True)
            args.update(data=str(write_phase_dataset(folder, data, chosen)), project=str(workdir), name=folder.name)
            report = None if on_epoch is None else (
                lambda epoch, metrics, _o=offset, _n=n: on_epoch(_o + epoch, {**metrics, "phase": _n}))
            record, was_resumed = _train_phase(start, args, folder, resume, report)
            resumed |= was_resumed
            record.update(phase=n, images=len(images.positives), empty_images=len(chosen) - len(images.positives),
                          negatives_added=len(negatives), resumed=was_resumed)
            done.append(record)
            write_json(state_file, {"phases": done})
        best = folder / record["best"]
        if phase.mine is not None and "mining" not in record:
            record["mining"] = _mine(n, cfg, phase, cfg.phases[k + 1], images, best, record["imgsz"], data, folder)
            write_json(state_file, {"phases": done})
        negatives = [p for p in images.empties if p.name in set(record.get("mining", {}).get("mined_images", ()))]
        offset += int(args["epochs"])
        start = str(best)
    last = done[-1]
    slim = workdir / WEIGHTS
    digest = slim_checkpoint(workdir / f"phase{total}" / last["best"], slim, last["imgsz"])
    return Trained(files={WEIGHTS: slim}, weights=WEIGHTS, architecture=Path(source).stem, framework="yolo",
                   input={"size": last["imgsz"]}, epochs_completed=sum(r["epochs_completed"] for r in done),
                   resumed=resumed, extra={"best_fitness": last["best_fitness"], "phases": done},
                   tensors_sha256=digest)
