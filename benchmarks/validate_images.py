"""Validation throughput: images/s checking (fully decoding) 2,000 JPEGs, one worker process vs all cores.

The ratio of the two runs, measured here in one run, shows whether validation uses every core.

    python benchmarks/validate_images.py [--images 2000] [--size 640]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_images(folder: Path, n: int, size: int) -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (size * 3 // 4, size, 3), dtype=np.uint8)
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.roll(base, i, axis=1)).save(folder / f"img_{i:05d}.jpg", quality=90)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--size", type=int, default=640)
    args = ap.parse_args()
    from wildtrain.data.coco import CocoDataset
    from wildtrain.data.validate import validate

    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        make_images(src, args.images, args.size)
        ds = lambda: CocoDataset(  # noqa: E731 — a fresh lenient dataset per run
            [{"id": i + 1, "file_name": p.name, "_path": p} for i, p in enumerate(sorted(src.iterdir()))], [],
            [{"id": 1, "name": "animal"}])
        times = {}
        for workers in (1, cores):
            t0 = time.perf_counter()
            _, report = validate(ds(), Path(tmp) / f"out{workers}", "clip", workers=workers)
            times[workers] = time.perf_counter() - t0
            assert report["images"]["kept"] == args.images
    print(f"validation of {args.images} JPEGs ({args.size}x{args.size * 3 // 4}), {cores} cores")
    for workers, t in times.items():
        print(f"  {workers} worker(s): {t:6.2f} s  {args.images / t:7.1f} images/s")
    print(f"  speed-up with {cores} workers: {times[1] / times[cores]:.2f}x; load average "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} (other jobs on the cores skew this)")


if __name__ == "__main__":
    main()
