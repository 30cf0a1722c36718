"""Ultralytics YOLO behind the adapter interface: train from a model YAML or a local .pt, predict, export.

Ultralytics checkpoints are pickles (not loadable with weights_only=True); we only load the ones this
pipeline wrote or a local file the user named in params.yaml.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Iterator

from wildtrain.devices import resolve_device
from wildtrain.errors import WildtrainError
from wildtrain.models import runstate
from wildtrain.models.base import Detections, EpochCallback, TrainData, TrainResult


def ultralytics_device(device: str) -> str:
    d = resolve_device(device)
    return d.removeprefix("cuda:") if d.startswith("cuda:") else d


def resolve_model_source(model: str, root: Path) -> str:
    """A local .pt (never downloaded) or a model YAML (local file or one packaged with Ultralytics)."""
    if model.endswith(".pt"):
        path = Path(model) if Path(model).is_absolute() else root / model
        if not path.is_file():
            raise WildtrainError(
                f"train.model: weights file '{model}' not found (weights are never downloaded: give a local "
                f".pt path, or a model YAML such as yolo11n.yaml to train from scratch)")
        return str(path)
    if model.endswith((".yaml", ".yml")):
        local = Path(model) if Path(model).is_absolute() else root / model
        if local.is_file():
            return str(local)
        from ultralytics.nn.tasks import yaml_model_load

        try:
            yaml_model_load(model)
        except (FileNotFoundError, OSError):
            raise WildtrainError(
                f"train.model: model YAML '{model}' is neither a local file nor an Ultralytics model "
                f"(e.g. yolo11n.yaml, yolo11s.yaml, yolov8n.yaml)") from None
        return model
    raise WildtrainError(f"train.model: expected a model YAML (e.g. yolo11n.yaml) or a local .pt file, got '{model}'")


@contextlib.contextmanager
def _offline_amp_check(device: str) -> Iterator[None]:
    """Ultralytics' AMP self-test downloads yolo26n.pt on CUDA; offline, trust AMP instead of crashing."""
    if not device.replace(",", "").isdigit():
        yield
        return
    import ultralytics.engine.trainer as trainer_module
    from ultralytics.utils import WEIGHTS_DIR

    if (WEIGHTS_DIR / "yolo26n.pt").is_file():
        yield
        return
    original = trainer_module.check_amp
    trainer_module.check_amp = lambda model: True
    try:
        yield
    finally:
        trainer_module.check_amp = original


def _epoch_reporter(on_epoch: EpochCallback, reported: set[int]):
    def report(trainer) -> None:
        if trainer.epoch >= trainer.epochs:  # final_eval re-validates best.pt at step `epochs`; evaluate does that
            return
        metrics = dict(trainer.label_loss_items(trainer.tloss, prefix="train"))
        metrics.update(trainer.metrics or {})
        metrics.update(getattr(trainer, "lr", {}) or {})
        reported.add(int(trainer.epoch))
        on_epoch(int(trainer.epoch), metrics)

    return report


def replay_results_csv(path: Path, on_epoch: EpochCallback, skip: set[int]) -> set[int]:
    """Multi-GPU (DDP) training runs in Ultralytics' own subprocess, where our callback is absent:
    log the epochs from its results.csv afterwards instead."""
    import csv

    seen: set[int] = set()
    if not path.is_file():
        return seen
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            epoch = int(float(row.pop("epoch"))) - 1  # results.csv counts from 1
            row.pop("time", None)
            seen.add(epoch)
            if epoch not in skip:
                on_epoch(epoch, {k.strip(): float(v) for k, v in row.items() if v not in ("", None)})
    return seen


class YoloAdapter:
    framework = "yolo"

    def train_args(self, cfg, data: TrainData, workdir: Path) -> dict:
        keys = ("epochs", "imgsz", "batch", "lr0", "lrf", "momentum", "weight_decay", "warmup_epochs",
                "optimizer", "cos_lr", "seed", "deterministic", "patience", "workers", "amp", "cache",
                "mosaic", "close_mosaic", "fliplr", "flipud", "degrees", "scale", "plots")
        args = {k: getattr(cfg, k) for k in keys}
        args.update(data=str(data.yolo_yaml.resolve()), device=ultralytics_device(cfg.device),
                    project=str(workdir.parent.resolve()), name=workdir.name, exist_ok=True, verbose=False)
        return args

    def train(self, cfg, data: TrainData, workdir: Path, on_epoch: EpochCallback) -> TrainResult:
        from wildtrain.env import configure_ultralytics

        configure_ultralytics()
        from ultralytics import YOLO

        source = resolve_model_source(cfg.model, Path.cwd())
        args = self.train_args(cfg, data, workdir)
        fingerprint = runstate.fingerprint(source, args, data.dataset_hash)
        last = workdir / "weights" / "last.pt"
        resume = runstate.start(workdir, fingerprint, cfg.resume, last.is_file())
        model = YOLO(str(last) if resume else source)
        reported: set[int] = set()
        model.add_callback("on_fit_epoch_end", _epoch_reporter(on_epoch, reported))
        with _offline_amp_check(args["device"]):
            if resume:
                print(f"train: resuming from {last}")
                model.train(resume=str(last), data=args["data"], device=args["device"], workers=args["workers"])
            else:
                model.train(**args)
        if not reported:
            reported |= replay_results_csv(workdir / "results.csv", on_epoch, reported)
        trainer = model.trainer
        best = Path(trainer.best) if Path(trainer.best).is_file() else Path(trainer.last)
        runstate.finish(workdir, fingerprint)
        epochs_completed = max(reported, default=int(trainer.epoch)) + 1
        return TrainResult(checkpoint=best, epochs_completed=epochs_completed, resumed=resume,
                           extra={"best_fitness": float(trainer.best_fitness or 0.0)})

    def predict(self, checkpoint: Path, images: list[Path], *, imgsz: int, conf: float, iou: float,
                max_det: int, batch: int, device: str) -> list[Detections]:
        from wildtrain.env import configure_ultralytics

        configure_ultralytics()
        from ultralytics import YOLO

        model = YOLO(str(checkpoint))
        out: list[Detections] = []
        dev = ultralytics_device(device).split(",")[0]
        for start in range(0, len(images), batch):
            chunk = [str(p) for p in images[start:start + batch]]
            for r in model.predict(chunk, imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, device=dev,
                                   verbose=False, batch=batch):
                xyxy = r.boxes.xyxy.cpu().numpy().astype(float)
                boxes = [[x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in xyxy.tolist()]
                out.append(Detections(boxes=boxes, classes=r.boxes.cls.cpu().numpy().astype(int).tolist(),
                                      scores=r.boxes.conf.cpu().numpy().astype(float).tolist()))
        return out

    def export(self, checkpoint: Path, out_dir: Path, *, imgsz: int) -> list[Path]:
        """ONNX export beside a copy of the checkpoint in out_dir (Ultralytics writes next to the .pt)."""
        from wildtrain.env import configure_ultralytics

        configure_ultralytics()
        from ultralytics import YOLO

        out_dir.mkdir(parents=True, exist_ok=True)
        pt = out_dir / "model.pt"
        shutil.copyfile(checkpoint, pt)
        onnx = YOLO(str(pt)).export(format="onnx", imgsz=imgsz, device="cpu", verbose=False)
        return [pt, Path(onnx)]
