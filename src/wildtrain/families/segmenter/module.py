"""The LightningModule: the U-Net, the chosen loss, a validation confusion matrix scored like the test set.

Validation mIoU comes from the same function as evaluation's (wildtrain.evaluate.segmentation), over a
confusion matrix that torchmetrics syncs across DDP processes, so the best checkpoint and early stopping
see the same number on every rank.
"""

from __future__ import annotations

import torch
import torchmetrics

from wildtrain.data.masks import IGNORE
from wildtrain.evaluate.segmentation import scores
from wildtrain.families.lightning_module import SupervisedModule
from wildtrain.families.segmenter.losses import SegmentationLoss
from wildtrain.families.segmenter.network import build

MONITOR = {"miou": ("val/miou", "max"), "loss": ("val/loss", "min")}


class SegmentationModule(SupervisedModule):
    def __init__(self, encoder: str, encoder_depth: int, decoder_channels: int, num_classes: int, lr: float,
                 weight_decay: float, optimizer: str, scheduler: str, epochs: int, loss: str, focal_gamma: float,
                 class_weights: list[float] | None = None, weights: str = ""):
        super().__init__()
        self.save_hyperparameters()  # plain values only, so a checkpoint says how it was built
        self.model = build(encoder, encoder_depth, decoder_channels, num_classes, weights=weights)
        self.loss = SegmentationLoss(loss, num_classes, class_weights, focal_gamma, IGNORE)
        self.val_confusion = torchmetrics.ConfusionMatrix(task="multiclass", num_classes=num_classes,
                                                          ignore_index=IGNORE)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.val_confusion.update(logits.argmax(1), y)
        self.log("val/loss", self.loss(logits, y), on_epoch=True, sync_dist=True, batch_size=len(y))

    def on_validation_epoch_end(self) -> None:
        s = scores(self.val_confusion.compute().cpu().numpy())
        self.val_confusion.reset()
        self.log("val/miou", s["miou"] if s["miou"] is not None else 0.0)
        self.log("val/pixel_accuracy", s["pixel_accuracy"])
