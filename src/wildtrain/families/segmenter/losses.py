"""Per-pixel losses with class weights, all skipping ignored pixels: cross-entropy, soft Dice, both, focal.

- `ce`: weighted cross-entropy (mean over labelled pixels, by weight, as torch does).
- `dice`: 1 - the weighted mean over classes present in the batch (truth or prediction) of soft Dice; it
  cares about each class's overlap, not its pixel count, so small classes weigh as much as large ones.
- `ce_dice`: their sum (the usual choice: CE's stable gradients, Dice's indifference to class size).
- `focal`: cross-entropy scaled by (1 - p)^gamma, so well-classified pixels (most of the background) fade out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("ce", "dice", "ce_dice", "focal")


class SegmentationLoss(torch.nn.Module):
    def __init__(self, kind: str, num_classes: int, weights: list[float] | None, gamma: float, ignore_index: int):
        super().__init__()
        if kind not in LOSSES:
            raise ValueError(f"unknown loss '{kind}' (known: {', '.join(LOSSES)})")
        self.kind, self.gamma, self.ignore = kind, gamma, ignore_index
        self.register_buffer("weight", torch.tensor(weights if weights else [1.0] * num_classes, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = target != self.ignore
        if not bool(valid.any()):
            return logits.sum() * 0.0  # a batch of padding only: no signal, but a graph to backpropagate
        safe = torch.where(valid, target, torch.zeros_like(target))
        logits = logits.float()  # AMP: losses in full precision
        if self.kind == "focal":
            return self._focal(logits, safe, valid)
        loss = logits.new_zeros(())
        if self.kind in ("ce", "ce_dice"):
            loss = loss + F.cross_entropy(logits, target, weight=self.weight, ignore_index=self.ignore)
        if self.kind in ("dice", "ce_dice"):
            loss = loss + self._dice(logits, safe, valid)
        return loss

    def _focal(self, logits, target, valid):
        logp = F.log_softmax(logits, 1).gather(1, target.unsqueeze(1)).squeeze(1)
        w = self.weight[target] * valid
        return (-(1 - logp.exp()) ** self.gamma * logp * w).sum() / w.sum().clamp(min=1e-12)

    def _dice(self, logits, target, valid, eps: float = 1.0):
        probs = F.softmax(logits, 1) * valid.unsqueeze(1)
        onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(probs.dtype) * valid.unsqueeze(1)
        dims = (0, 2, 3)
        inter, card = (probs * onehot).sum(dims), (probs + onehot).sum(dims)
        dice = (2 * inter + eps) / (card + eps)
        present = (onehot.sum(dims) > 0) | (probs.sum(dims) > 0.5)
        w = self.weight * present
        return ((1 - dice) * w).sum() / w.sum().clamp(min=1e-12)
