"""What the Lightning families (classifier, segmenter) share in their LightningModule: the forward pass through
`self.model`, the training step on `self.loss`, and the optimizer and schedule from their params.

Adam and AdamW use PyTorch's fused kernels where the weights are on CPU or CUDA: one pass over each tensor
instead of a dozen. The default per-tensor implementation spent about as long in `step()` as the forward and
backward passes of a 64 px resnet18 batch on a 2-core CPU (measured: 130-450 ms vs 23-130 ms per step for
11.7 M weights); the updates are the same rule, computed in another order.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch

FUSED_DEVICES = ("cpu", "cuda")


class SupervisedModule(pl.LightningModule):
    """A subclass sets `self.model` and `self.loss`, saves hyperparameters that include optimizer, lr,
    weight_decay, scheduler and epochs, and adds its validation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.loss(self(x), y)
        self.log("train/loss", loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=len(y))
        return loss

    def configure_optimizers(self):
        """The optimizer, and a per-epoch cosine schedule unless `scheduler` is "none"."""
        h = self.hparams
        params = list(self.parameters())
        if h.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=h.lr, momentum=0.9, weight_decay=h.weight_decay)
        else:
            fused = all(p.device.type in FUSED_DEVICES and p.is_floating_point() for p in params)
            kind = torch.optim.Adam if h.optimizer == "adam" else torch.optim.AdamW
            opt = kind(params, lr=h.lr, weight_decay=h.weight_decay, fused=fused or None)
        if h.scheduler == "none":
            return opt
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, h.epochs))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
