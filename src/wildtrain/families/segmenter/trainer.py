"""The segmenter's Lightning module built from its params, and fitted (wildtrain.families.lightning_fit) with
one row of metrics per epoch handed to the pipeline's callback."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_only

from wildtrain.families import lightning_fit
from wildtrain.families.lightning_fit import FitResult
from wildtrain.families.segmenter.datamodule import MaskDataModule
from wildtrain.families.segmenter.module import MONITOR, SegmentationModule


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


def fit(cfg, dm: MaskDataModule, module: SegmentationModule, workdir: Path, on_epoch, resume: bool) -> FitResult:
    return lightning_fit.fit("segmenter", cfg, dm, module, workdir, resume, MONITOR[cfg.monitor],
                             [EpochReport(on_epoch)])
