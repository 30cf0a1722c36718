"""The LightningModule: a torchvision backbone, (weighted) cross-entropy, torchmetrics, AdamW + cosine.

Validation metrics are synced across DDP processes (`sync_dist`), so the best checkpoint and early
stopping see the same numbers on every rank.
"""

from __future__ import annotations

import torch
import torchmetrics

from wildtrain.families.classifier.backbones import build
from wildtrain.families.lightning_module import SupervisedModule

MONITOR = {"f1_macro": ("val/f1_macro", "max"), "accuracy": ("val/accuracy", "max"), "loss": ("val/loss", "min")}


class CropClassifier(SupervisedModule):
    def __init__(self, backbone: str, num_classes: int, lr: float, weight_decay: float, optimizer: str,
                 scheduler: str, epochs: int, class_weights: list[float] | None = None, pretrained: bool = False,
                 weights: str = ""):
        super().__init__()
        self.save_hyperparameters()  # plain values only, so a checkpoint says how it was built
        self.model = build(backbone, num_classes, pretrained=pretrained, weights=weights)
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.loss = torch.nn.CrossEntropyLoss(weight=weight)
        task = {"task": "multiclass", "num_classes": num_classes}
        self.val_acc = torchmetrics.Accuracy(**task)
        self.val_f1 = torchmetrics.F1Score(average="macro", **task)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.val_acc(logits, y)
        self.val_f1(logits, y)
        self.log("val/loss", self.loss(logits, y), on_epoch=True, sync_dist=True, batch_size=len(y))
        self.log("val/accuracy", self.val_acc, on_epoch=True, batch_size=len(y))
        self.log("val/f1_macro", self.val_f1, on_epoch=True, batch_size=len(y))
