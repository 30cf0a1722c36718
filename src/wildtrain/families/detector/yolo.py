"""Ultralytics YOLO as a detector framework: train from a model YAML or a local .pt, load once, predict on
arrays, export ONNX and TorchScript.

Ultralytics checkpoints are pickles (not loadable with weights_only=True); we only load the ones this
pipeline wrote or a local file the user named in params.yaml. The model folder gets a slim checkpoint
(weights + the few args Ultralytics needs to load them; no date, optimizer or absolute paths), so a rerun
that gives the same tensors gives the same file.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from wildtrain.devices import resolve_device
from wildtrain.errors import WildtrainError
from wildtrain.contract import (Detections, EpochCallback, Exported, ExportIO, ModelCard, Trained, TrainData,
                                    tensors_sha256)
from wildtrain.io import write_torch

WEIGHTS = "model.pt"
TRAIN_KEYS = ("epochs", "imgsz", "batch", "lr0", "lrf", "momentum", "weight_decay", "warmup_epochs", "optimizer",
              "cos_lr", "seed", "deterministic", "patience", "workers", "amp", "cache", "mosaic", "close_mosaic",
              "fliplr", "flipud", "degrees", "scale", "plots")


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


def _thread_per_core(trainer) -> None:
    """Ultralytics trains on min(8, cores - 1) threads (a core left for its data loader); here the loader's
    workers are light and a second thread makes an epoch about 1.x times faster. Stated rather than inherited:
    the thread count changes the weights."""
    import os

    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))


def train_args(cfg, data: TrainData, workdir: Path) -> dict:
    args = {k: getattr(cfg, k) for k in TRAIN_KEYS}
    args.update(data=str(data.yolo_yaml), device=ultralytics_device(cfg.device), project=str(workdir.parent),
                name=workdir.name, exist_ok=True, verbose=False)
    return args


def slim_checkpoint(src: Path, dst: Path, imgsz: int, task: str = "detect") -> str:
    """The weights Ultralytics needs to load a model (EMA where kept), nothing run-specific; returns the
    tensors' hash."""
    import torch

    ckpt = torch.load(src, map_location="cpu", weights_only=False)  # this run's own checkpoint
    model = ckpt.get("ema") or ckpt["model"]
    args = {"task": task, "imgsz": imgsz, "single_cls": False}
    model.args = args
    write_torch(dst, {"model": model, "train_args": args})
    return tensors_sha256(model.state_dict())


def fit(model, args: dict, resume_from: Path | None, workdir: Path, on_epoch: EpochCallback | None) -> set[int]:
    """Run one Ultralytics training of `model` (or resume it from `resume_from`) with our callbacks: epochs reported
    as they end (replayed from results.csv if Ultralytics skipped the callback), one torch thread per core on CPU,
    and no AMP check that would download weights. Shared by the one training and each of `train.phases`.
    Returns the epochs reported (0-based)."""
    reported: set[int] = set()
    if on_epoch is not None:
        model.add_callback("on_fit_epoch_end", _epoch_reporter(on_epoch, reported))
    if args["device"] == "cpu":
        model.add_callback("on_pretrain_routine_start", _thread_per_core)
    with _offline_amp_check(args["device"]):
        if resume_from is not None:
            print(f"train: resuming from {resume_from}")
            model.train(resume=str(resume_from), data=args["data"], device=args["device"], workers=args["workers"])
        else:
            model.train(**args)
    if not reported and on_epoch is not None:
        reported |= replay_results_csv(workdir / "results.csv", on_epoch, reported)
    return reported


def train(cfg, data: TrainData, workdir: Path, resume: bool, on_epoch: EpochCallback) -> Trained:
    """One Ultralytics training (train.phases, several in a row, is families/detector/phases.py, built on this)."""
    from wildtrain.env import configure_ultralytics

    configure_ultralytics()
    from ultralytics import YOLO

    source = resolve_model_source(cfg.model, data.root)
    args = train_args(cfg, data, workdir)
    last = workdir / "weights" / "last.pt"
    resume = resume and last.is_file()  # killed before the first checkpoint: start over in the same run
    model = YOLO(str(last) if resume else source)
    reported = fit(model, args, last if resume else None, workdir, on_epoch)
    trainer = model.trainer
    best = Path(trainer.best) if Path(trainer.best).is_file() else Path(trainer.last)
    slim = workdir / WEIGHTS
    digest = slim_checkpoint(best, slim, cfg.imgsz)
    return Trained(files={WEIGHTS: slim}, weights=WEIGHTS, architecture=Path(source).stem, framework="yolo",
                   input={"size": cfg.imgsz}, epochs_completed=max(reported, default=int(trainer.epoch)) + 1,
                   resumed=resume, extra={"best_fitness": float(trainer.best_fitness or 0.0)},
                   tensors_sha256=digest)


class YoloNet:
    """A loaded YOLO model: arrays in, boxes out in each array's own pixels.

    The same steps as Ultralytics' `predict` (its AutoBackend with fused layers, its LetterBox, its NMS, its box
    scaling), called directly on the whole batch of arrays: `YOLO.predict` also re-reads its settings, wraps the
    arrays in a data loader, flips them BGR -> RGB and builds Results objects on every call (a few % of a CPU
    forward pass of a batch of slices; more where the network is fast, on a GPU). tests/test_yolo_predict.py
    checks the boxes and scores against `YOLO.predict`'s."""

    def __init__(self, model_dir: Path, card: ModelCard, device: str):
        from wildtrain.env import configure_ultralytics

        configure_ultralytics()
        from ultralytics import YOLO
        from ultralytics.nn.autobackend import AutoBackend
        from ultralytics.utils.checks import check_imgsz
        from ultralytics.utils.torch_utils import select_device

        yolo = YOLO(str(model_dir / card.weights), task="detect")
        self.device = select_device(ultralytics_device(device).split(",")[0], verbose=False)
        self.backend = AutoBackend(model=yolo.model, device=self.device, fuse=True, verbose=False).eval()
        self.imgsz = check_imgsz(int(card.input["size"]), stride=self.backend.stride, min_dim=2)
        # as Ultralytics' predictor: imports torchvision, whose NMS its non_max_suppression then uses (its own
        # fallback keeps other boxes), and runs one forward pass on CUDA
        self.backend.warmup(imgsz=(1, 3, *self.imgsz))
        # one forward pass at a time, as Ultralytics' predictor: its Detect head caches the anchors of the last input
        # shape, so concurrent calls (a served model answers requests in threads) could decode with another's
        self.lock = threading.Lock()

    PRECISIONS = ("fp32", "bf16")

    def predict(self, images: Sequence[np.ndarray], *, conf: float, iou: float, max_det: int,
                precision: str = "fp32") -> list[Detections]:
        """`precision` bf16: the backbone and neck in bfloat16 (autocast; AMX units make it ~2x faster on recent
        x86 CPUs, with WILDTRAIN_CPU_KERNELS=native), the head and its box decoding in fp32 — boxes close to fp32's,
        not bit-identical."""
        import torch
        from ultralytics.data.augment import LetterBox
        from ultralytics.utils import nms, ops

        if not images:
            return []
        # as Ultralytics: same-shape batches padded to a stride multiple only, mixed ones to imgsz x imgsz; the
        # arrays are RGB already (Ultralytics takes OpenCV's BGR and flips it)
        letterbox = LetterBox(self.imgsz, auto=len({im.shape for im in images}) == 1, stride=self.backend.stride)
        batch = np.stack([letterbox(image=im) for im in images])
        with self.lock, torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).contiguous().float().div_(255)
            if precision == "bf16":
                self._head_in_fp32()
                self._warn_pinned_kernels()
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                raw = self.backend(x)
            kept = nms.non_max_suppression(raw, conf, iou, max_det=max_det,
                                           end2end=getattr(self.backend, "end2end", False))
            out = []
            for det, im in zip(kept, images):
                xyxy = ops.scale_boxes(x.shape[2:], det[:, :4], im.shape).cpu().numpy().astype(float)
                out.append(Detections(boxes=[[x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in xyxy.tolist()],
                                      classes=det[:, 5].cpu().numpy().astype(int).tolist(),
                                      scores=det[:, 4].cpu().numpy().astype(float).tolist()))
        return out

    def _warn_pinned_kernels(self) -> None:
        """bf16 is fast only on the CPU's own bfloat16 units (AMX, AVX512-BF16); the default kernel pin (avx2, for
        reproducible training) hides them, and bfloat16 then runs emulated, ~3x slower than fp32 (measured)."""
        from wildtrain.env import KERNELS_SWITCH, cpu_kernel_mode

        if self.device.type != "cpu" or getattr(self, "_warned", False) or cpu_kernel_mode() == "native":
            return
        self._warned = True
        print(f"warning: precision bf16 on CPU kernels pinned to {cpu_kernel_mode()} runs bfloat16 emulated, slower "
              f"than fp32: set {KERNELS_SWITCH}=native for the CPU's bfloat16 units (AMX, AVX512-BF16)")

    def _head_in_fp32(self) -> None:
        """Under bf16 autocast, the Detect head still runs in fp32 on fp32 copies of its inputs: box coordinates
        in bfloat16 (8 significant bits) would be off by up to 2 px at 320 px."""
        import torch

        head = self.backend.model.model[-1]
        if getattr(head, "_wildtrain_fp32", False):
            return
        forward = head.forward

        def fp32_forward(feats):
            with torch.autocast(self.device.type, enabled=False):
                return forward([f.float() for f in feats])

        head.forward = fp32_forward
        head._wildtrain_fp32 = True


NET = YoloNet


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Ultralytics' logger at WARNING for the duration (its warnings and errors still show)."""
    import logging

    from ultralytics.utils import LOGGER

    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)
    try:
        yield
    finally:
        LOGGER.setLevel(level)


def ultralytics_export(weights: Path, out_dir: Path, size: int, task: str, images: Sequence[np.ndarray]
                       ) -> tuple[dict[str, Path], np.ndarray, np.ndarray, int]:
    """ONNX (dynamic batch) and TorchScript of an Ultralytics model through its own exporter, which fuses the model
    and puts its head in export mode, and the reference their parity is checked against: the fused PyTorch model's
    first output on `images` letterboxed to `size`, as predict feeds a square batch. Shared by every Ultralytics
    family (detect, segment). Returns (files, input batch, reference output, parameter count)."""
    import shutil

    import torch

    from wildtrain.env import configure_ultralytics

    configure_ultralytics()
    from ultralytics import YOLO
    from ultralytics.data.augment import LetterBox

    out_dir.mkdir(parents=True, exist_ok=True)
    pt = out_dir / WEIGHTS  # Ultralytics writes its exports beside the .pt: export from a copy
    shutil.copyfile(weights, pt)
    with quiet():  # its exporter logs what to run next ("yolo predict model=/tmp/...") even with verbose=False
        onnx = YOLO(str(pt), task=task).export(format="onnx", imgsz=size, device="cpu", dynamic=True, verbose=False)
        script = YOLO(str(pt), task=task).export(format="torchscript", imgsz=size, device="cpu", verbose=False)
    pt.unlink()

    model = YOLO(str(weights), task=task).model.float().eval()
    total = sum(t.numel() for t in model.parameters())
    letterbox = LetterBox((size, size), auto=False, stride=int(max(model.stride)))
    x = np.ascontiguousarray(np.stack([letterbox(image=im) for im in images]).transpose(0, 3, 1, 2)
                             .astype(np.float32) / 255)
    with torch.inference_mode():
        ref = model.fuse(verbose=False)(torch.from_numpy(x))
    while isinstance(ref, (list, tuple)):  # (output0, head internals) or ((output0, prototypes), ...): output0
        ref = ref[0]
    return {"onnx": Path(onnx), "torchscript": Path(script)}, x, ref.float().numpy(), int(total)


def export(model_dir: Path, card: ModelCard, out_dir: Path, images: Sequence[np.ndarray]) -> Exported:
    """The detector's exports (ultralytics_export): both output the raw Detect head [N, 4 + classes, anchors]."""
    size = int(card.input["size"])
    files, x, ref, total = ultralytics_export(model_dir / card.weights, out_dir, size, "detect", images)
    io = ExportIO(size=size, resize="letterbox", mean=None, std=None, output="yolo",
                  output_dims=("batch", "box_and_class_scores", "anchor"),
                  output_shape=(-1, 4 + len(card.class_names), -1), classes=tuple(card.class_names),
                  input_name="images", output_name="output0")
    return Exported(files=files, io=io, reference=(x, ref), total_parameters=total)
