"""Which N images to push for review: where a reviewer's minute is worth most.

- `uncertainty` (default): the champion's doubt about the image. Each box the detector keeps at a low threshold
  (FLOOR = 0.05, below the predict default of 0.25, so that near-misses count) has a score s; its doubt is
  1 - |2s - 1|, 1 at s = 0.5 and 0 at s = 0 or 1. An image's score is the sum of its boxes' doubts: borderline
  boxes, and many of them, rank an image first (a herd the model half-sees), while an image with only confident
  boxes, or none at all, ranks last. Ties keep the source's order.
- `diverse`: k-center greedy on cheap image features (a 16x16 grey thumbnail and the mean colour): each next image
  is the one farthest from those picked, so N images cover the source's looks rather than one kind of scene.
- `random`: N images drawn with a seed (--seed), the baseline the other two are compared with.
"""

from __future__ import annotations

import random as _random

import numpy as np

STRATEGIES = ("uncertainty", "diverse", "random")
FLOOR = 0.05  # the score threshold of the predictions scored (and pushed as pre-annotations at >= conf)


def doubt(scores: list[float]) -> float:
    """Sum over boxes of 1 - |2s - 1|."""
    return float(sum(1 - abs(2 * float(s) - 1) for s in scores))


def by_uncertainty(scores: list[list[float]], n: int) -> list[int]:
    """Indices of the n images with the highest doubt (stable: ties keep the source's order)."""
    ranked = sorted(range(len(scores)), key=lambda k: -doubt(scores[k]))
    return ranked[:n]


def features(image: np.ndarray) -> np.ndarray:
    """A 16x16 grey thumbnail (0..1) and the mean RGB colour: enough to tell scenes apart, cheap to compute."""
    from PIL import Image

    grey = np.asarray(Image.fromarray(image).convert("L").resize((16, 16), Image.BILINEAR), dtype=np.float32) / 255
    return np.concatenate([grey.ravel(), image.reshape(-1, 3).mean(0).astype(np.float32) / 255])


def by_diversity(feats: list[np.ndarray], n: int) -> list[int]:
    """k-center greedy: start with the image farthest from the mean, then always the one farthest from the picked."""
    if not feats:
        return []
    x = np.stack(feats)
    first = int(np.argmax(((x - x.mean(0)) ** 2).sum(1)))
    picked = [first]
    dist = ((x - x[first]) ** 2).sum(1)
    while len(picked) < min(n, len(x)):
        k = int(np.argmax(dist))
        picked.append(k)
        dist = np.minimum(dist, ((x - x[k]) ** 2).sum(1))
    return picked


def by_chance(count: int, n: int, seed: int) -> list[int]:
    return sorted(_random.Random(seed).sample(range(count), min(n, count)))
