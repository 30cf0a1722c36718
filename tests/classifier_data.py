"""Tiny ImageFolder crops for classifier tests: each class a distinct colour and shape on noisy ground."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {"antelope": (176, 104, 48), "bird": (250, 250, 245), "elephant": (120, 116, 112), "zebra": (20, 20, 20)}


def write_crops(root: Path, counts: dict[str, dict[str, int]], size: int = 24, seed: int = 0) -> Path:
    """counts: split -> class -> number of crops. Returns the crops folder (root/data/crops)."""
    rng = np.random.default_rng(seed)
    crops = root / "data" / "crops"
    for split, per_class in counts.items():
        for k, (name, n) in enumerate(per_class.items()):
            folder = crops / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                ground = rng.integers(60, 110, (size, size, 3), dtype=np.uint8)
                im = Image.fromarray(ground)
                d = ImageDraw.Draw(im)
                m = int(rng.integers(2, 5))
                shape = d.ellipse if k % 2 == 0 else d.rectangle
                shape([m, m, size - m, size - m - 4 * (k // 2)], fill=COLOURS.get(name, (0, 90, 200)))
                im.save(folder / f"{name}_{i}.png")
    return crops


def tiny_params(root: Path, **classifier) -> Path:
    """A params.yaml with only the classifier sections (the rest falls back to defaults)."""
    import yaml

    cfg = {"backbone": "mobilenet_v3_small", "imgsz": 32, "epochs": 2, "batch": 8, "workers": 0, "device": "cpu", **classifier}
    text = yaml.safe_dump({"classifier": cfg, "classifier_evaluate": {"batch": 16, "device": "cpu"}})
    (root / "params.yaml").write_text(text)
    return root / "params.yaml"


SMALL = {"train": {"antelope": 12, "bird": 8, "zebra": 16}, "val": {"antelope": 4, "bird": 3, "zebra": 4},
         "test": {"antelope": 4, "bird": 4, "zebra": 4}}
