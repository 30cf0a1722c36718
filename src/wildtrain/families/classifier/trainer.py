"""The classifier's Lightning module built from its params, and fitted (wildtrain.families.lightning_fit) with
its epochs reported through a Lightning logger (lightning_logger.EpochLoggerBridge)."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import LearningRateMonitor

from wildtrain.families import lightning_fit
from wildtrain.families.classifier.datamodule import CropDataModule
from wildtrain.families.classifier.lightning_logger import EpochLoggerBridge
from wildtrain.families.classifier.module import MONITOR, CropClassifier
from wildtrain.families.lightning_fit import FitResult


def build_module(cfg, dm: CropDataModule, root: Path) -> CropClassifier:
    pl.seed_everything(cfg.seed, workers=True, verbose=False)  # before the weights are initialised
    weights = cfg.weights and str(Path(cfg.weights) if Path(cfg.weights).is_absolute() else root / cfg.weights)
    return CropClassifier(cfg.backbone, dm.num_classes, cfg.lr, cfg.weight_decay, cfg.optimizer, cfg.scheduler,
                          cfg.epochs, dm.class_weights().tolist() if cfg.imbalance == "loss_weights" else None,
                          pretrained=cfg.pretrained, weights=weights or "")


def fit(cfg, dm: CropDataModule, module: CropClassifier, workdir: Path, on_epoch, resume: bool) -> FitResult:
    bridge = EpochLoggerBridge(on_epoch)
    return lightning_fit.fit("classifier", cfg, dm, module, workdir, resume, MONITOR[cfg.monitor],
                             [LearningRateMonitor(logging_interval="epoch"), bridge], logger=bridge)
