"""Lightning's logger hooks -> the pipeline's per-epoch callback (dvclive + MLflow), one row per epoch.

Lightning calls `log_metrics` many times per epoch (callbacks such as LearningRateMonitor log on their
own); we collect them and hand one dict per epoch to the callback, on rank 0 only.
"""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from wildtrain.contract import EpochCallback


class EpochLoggerBridge(Logger, pl.Callback):
    def __init__(self, on_epoch: EpochCallback | None):
        super().__init__()
        self.on_epoch = on_epoch
        self.pending: dict[str, float] = {}

    @property
    def name(self) -> str:
        return "wildtrain"

    @property
    def version(self) -> str:
        return "0"

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass  # params are logged once by the stage, with the dataset statistics

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.pending.update({k: float(v) for k, v in metrics.items() if k != "epoch"})

    @rank_zero_only
    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        """After validation (Lightning 2 runs it first): this epoch's train + val metrics and the LR."""
        if trainer.sanity_checking or self.on_epoch is None:
            return
        row = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        row.update(self.pending)
        self.pending = {}
        self.on_epoch(trainer.current_epoch, row)
