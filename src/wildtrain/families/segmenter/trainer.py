"""Fit the segmenter with Lightning: best checkpoint and early stopping on `monitor`, devices/DDP, AMP, gradient
accumulation, resume from the last checkpoint, one row of metrics per epoch to the pipeline's callback.

Lightning checkpoints are full pickles (optimizer, callback and loop state): they are loaded with
`weights_only=False`, and only from `runs/segmenter/`, which this pipeline alone writes. Weights handed to
later stages are a plain state dict (`models_segmenter/model.pt`, loaded with `weights_only=True`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only

from wildtrain.devices import lightning_devices
from wildtrain.errors import WildtrainError
from wildtrain.families.segmenter.datamodule import MaskDataModule
from wildtrain.families.segmenter.module import MONITOR, SegmentationModule

LAST, BEST = "last.ckpt", "best.ckpt"


@dataclass(frozen=True)
class FitResult:
    state_dict: dict | None  # best weights of the U-Net (rank 0 only; None on other DDP ranks)
    epochs_completed: int
    best_score: float | None
    resumed_after_epochs: int | None  # epochs the resumed checkpoint had completed


class EpochReport(pl.Callback):
    """After each epoch's validation (Lightning 2 runs it before this hook): its train + val metrics and the
    learning rate, as one row, to the pipeline's callback (dvclive + MLflow); rank 0 only."""

    def __init__(self, on_epoch):
        self.on_epoch = on_epoch

    @rank_zero_only
    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.on_epoch is None:
            return
        row = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        row["lr"] = float(trainer.optimizers[0].param_groups[0]["lr"])
        self.on_epoch(trainer.current_epoch, row)


def build_module(cfg, dm: MaskDataModule, root: Path) -> SegmentationModule:
    pl.seed_everything(cfg.seed, workers=True, verbose=False)  # before the weights are initialised
    weights = cfg.weights and str(Path(cfg.weights) if Path(cfg.weights).is_absolute() else root / cfg.weights)
    return SegmentationModule(cfg.encoder, cfg.encoder_depth, cfg.decoder_channels, dm.num_classes, cfg.lr,
                              cfg.weight_decay, cfg.optimizer, cfg.scheduler, cfg.epochs, cfg.loss, cfg.focal_gamma,
                              dm.class_weights(), weights=weights or "")


def _model_state(ckpt: Path) -> dict:
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]  # our own checkpoint
    return {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}


def fit(cfg, dm: MaskDataModule, module: SegmentationModule, workdir: Path, on_epoch, resume: bool) -> FitResult:
    metric, mode = MONITOR[cfg.monitor]
    accelerator, devices = lightning_devices(cfg.device, cfg.devices, "segmenter.device")
    last = workdir / LAST
    ckpt_path = last if resume and last.is_file() else None
    # A checkpoint is saved when an epoch's validation ends, so it holds `epoch` + 1 completed epochs.
    resumed_from = torch.load(last, map_location="cpu", weights_only=False)["epoch"] + 1 if ckpt_path else None
    checkpoint = ModelCheckpoint(dirpath=workdir, filename=BEST.removesuffix(".ckpt"), monitor=metric, mode=mode,
                                 save_top_k=1, save_last=True, enable_version_counter=False)
    callbacks = [checkpoint, EarlyStopping(monitor=metric, mode=mode, patience=cfg.patience), EpochReport(on_epoch)]
    try:
        trainer = pl.Trainer(max_epochs=cfg.epochs, accelerator=accelerator, devices=devices,
                             strategy=cfg.strategy if cfg.devices > 1 or isinstance(devices, list) else "auto",
                             precision=cfg.precision, accumulate_grad_batches=cfg.accumulate_grad_batches,
                             callbacks=callbacks, logger=False, default_root_dir=workdir, enable_progress_bar=False,
                             enable_model_summary=False, num_sanity_val_steps=0)
    except (ValueError, RuntimeError) as e:  # Lightning's MisconfigurationException is a ValueError
        raise WildtrainError(f"segmenter: {str(e).splitlines()[0]}") from None
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path, weights_only=False)
    if not trainer.is_global_zero:
        return FitResult(None, trainer.current_epoch, None, resumed_from)
    best = Path(checkpoint.best_model_path) if checkpoint.best_model_path else last
    score = checkpoint.best_model_score
    return FitResult(_model_state(best), trainer.current_epoch, None if score is None else float(score), resumed_from)
