"""Training images/s of the segmenter's DataModule + LightningModule (Lightning Trainer) vs a bare PyTorch loop
over the same DataLoader, U-Net, loss and optimizer, in one process.

Both see the same synthetic scenes and masks (the built-in generator, as canonical split files), batches,
joint image+mask augmentations and number of optimizer steps; validation is off in both (this measures training
throughput). Runs are interleaved (A B A B ...) and the first epoch of each is warm-up, so machine noise falls on
both. Prints and writes benchmarks/results/segmenter_throughput.json.

    python benchmarks/segmenter_throughput.py --images 64 --imgsz 160 --epochs 3 --repeats 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from common import bare_run, lightning_run, load_line  # noqa: E402


def write_splits(work: Path, images: int, size: int) -> dict[str, Path]:
    """Synthetic scenes with their masks as canonical split files (train: `images`, val: 4)."""
    from wildtrain.data import synthetic

    ds = synthetic.generate(work, images + 4, size, 8, 0.1, seed=0)
    out = {}
    for name, ims in (("train", ds.images[:images]), ("val", ds.images[images:])):
        part = ds.subset({im["id"] for im in ims})
        part.info = {"image_root": "images"}
        part.save(work / f"{name}.json")
        out[name] = work / f"{name}.json"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64, help="training images")
    ap.add_argument("--size", type=int, default=320, help="side of the generated scenes (px)")
    ap.add_argument("--epochs", type=int, default=3, help="per run; the first is warm-up")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    import torch

    from wildtrain import env, params
    from wildtrain.families.segmenter.datamodule import MaskDataModule
    from wildtrain.families.segmenter.trainer import build_module

    work = Path(tempfile.mkdtemp(prefix="wildtrain-bench-seg-"))
    env.configure(work)
    coco = write_splits(work, args.images, args.size)
    cfg = dataclasses.replace(params.load(REPO / "params.yaml").segmenter, epochs=args.epochs)
    dm = MaskDataModule(coco, cfg)

    def make_module():
        torch.manual_seed(0)
        return build_module(cfg, dm, work)

    steps = len(dm.train_split) // cfg.batch  # drop_last: full batches only
    images = steps * cfg.batch * (args.epochs - 1)
    runs = {"lightning": [], "bare": []}
    for _ in range(args.repeats):
        runs["lightning"].append(images / lightning_run(dm, make_module, args.epochs))
        runs["bare"].append(images / bare_run(dm, make_module, args.epochs))
    best = {k: max(v) for k, v in runs.items()}
    result = {"encoder": cfg.encoder, "imgsz": cfg.imgsz, "scene_size": args.size, "train_images": len(dm.train_split),
              "batch": cfg.batch, "workers": cfg.workers, "loss": cfg.loss, "timed_epochs": args.epochs - 1,
              "repeats": args.repeats, "images_per_s": {k: [round(x, 2) for x in v] for k, v in runs.items()},
              "best_images_per_s": {k: round(v, 2) for k, v in best.items()},
              "median_ratio": round(statistics.median(a / b for a, b in zip(runs["lightning"], runs["bare"])), 3),
              "ratio_lightning_over_bare": round(best["lightning"] / best["bare"], 3), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "load": load_line()}
    out = REPO / "benchmarks" / "results" / "segmenter_throughput.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
