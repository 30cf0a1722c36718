"""Training images/s of the classifier's DataModule + LightningModule (Lightning Trainer) vs a bare PyTorch
loop over the same DataLoader, model, loss and optimizer, in one process.

Both see the same crops, batches, augmentations and number of optimizer steps; validation is off in both
(this measures training throughput). Runs are interleaved (A B A B ...) and the first epoch of each is
warm-up, so machine noise falls on both. Prints and writes benchmarks/results/classifier_throughput.json.

    python benchmarks/classifier_throughput.py --crops 256 --imgsz 64 --epochs 3 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, bare_run, lightning_run, load_line  # noqa: E402

CLASSES = {"antelope": (176, 104, 48), "bird": (250, 250, 245), "elephant": (120, 116, 112), "zebra": (20, 20, 20)}


def write_crops(crops: Path, per_split: dict[str, int], size: int = 48) -> None:
    """ImageFolder crops: each class a distinct colour and shape on noisy ground."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    for split, n in per_split.items():
        for k, (name, colour) in enumerate(CLASSES.items()):
            folder = crops / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                im = Image.fromarray(rng.integers(60, 110, (size, size, 3), dtype=np.uint8))
                m = int(rng.integers(2, 8))
                shape = ImageDraw.Draw(im).ellipse if k % 2 == 0 else ImageDraw.Draw(im).rectangle
                shape([m, m, size - m, size - m - 8 * (k // 2)], fill=colour)
                im.save(folder / f"{name}_{i}.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crops", type=int, default=256, help="training crops (split over 4 classes)")
    ap.add_argument("--imgsz", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3, help="per run; the first is warm-up")
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    import dataclasses

    import torch

    import yaml

    from wildtrain import env, params
    from wildtrain.families.classifier.datamodule import CropDataModule
    from wildtrain.families.classifier.trainer import build_module

    work = Path(tempfile.mkdtemp(prefix="wildtrain-bench-"))
    env.configure(work)
    write_crops(work / "data/crops", {"train": max(2, args.crops // 4), "val": 2})
    (work / "params.yaml").write_text(yaml.safe_dump({"classifier": {
        "backbone": args.backbone, "imgsz": args.imgsz, "batch": 32, "workers": 0, "device": "cpu"}}))
    cfg = params.load(work / "params.yaml").classifier
    cfg = dataclasses.replace(cfg, epochs=args.epochs)
    dm = CropDataModule(work / "data/crops", cfg)

    def make_module():
        torch.manual_seed(0)
        return build_module(cfg, dm, work)

    steps = len(dm.train_split.files) // cfg.batch  # drop_last: full batches only
    images = steps * cfg.batch * (args.epochs - 1)
    runs = {"lightning": [], "bare": []}
    for _ in range(args.repeats):
        runs["lightning"].append(images / lightning_run(dm, make_module, args.epochs))
        runs["bare"].append(images / bare_run(dm, make_module, args.epochs))
    best = {k: max(v) for k, v in runs.items()}
    result = {"backbone": args.backbone, "imgsz": args.imgsz, "train_crops": len(dm.train_split.files),
              "batch": cfg.batch, "timed_epochs": args.epochs - 1, "repeats": args.repeats,
              "images_per_s": {k: [round(x, 1) for x in v] for k, v in runs.items()},
              "best_images_per_s": {k: round(v, 1) for k, v in best.items()},
              "median_ratio": round(statistics.median(a / b for a, b in zip(runs["lightning"], runs["bare"])), 3),
              "ratio_lightning_over_bare": round(best["lightning"] / best["bare"], 3), "torch": torch.__version__,
              "load": load_line()}
    out = RESULTS / "classifier_throughput.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
