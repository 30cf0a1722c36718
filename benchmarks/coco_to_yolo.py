"""COCO -> YOLO labels: wildtrain (load_coco + write_labels) vs ultralytics.data.converter.convert_coco.

Same synthetic COCO file (default 200k boxes on 20k images), both write one label file per image; the
labels are compared number by number (to the 6 significant digits Ultralytics writes). Each runs
--repeat times, alternating; prints every wall time and the ratios, all from this one run. Before each
timed run, garbage is collected and dirty pages are synced, so neither tool pays for the other's writes.

By default it runs twice: on the temp dir's disk, then on tmpfs (/dev/shm). Creating 20,000 files is a
floor both tools share; on a VM disk it stalls for seconds at random (write-back), so the tmpfs figures
are the steady ones and the disk figures need the best of several runs.

    python benchmarks/coco_to_yolo.py [--boxes 200000] [--per-image 10] [--repeat 5] [--dir PATH ...]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", str(Path(__file__).resolve().parents[1] / ".ultralytics"))


def make_coco(path: Path, n_boxes: int, per_image: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    n_images = n_boxes // per_image
    sizes = rng.integers(640, 4000, (n_images, 2))
    images = [{"id": i + 1, "file_name": f"img_{i:06d}.jpg", "width": int(w), "height": int(h)}
              for i, (w, h) in enumerate(sizes)]
    img_idx = np.repeat(np.arange(n_images), per_image)
    wh = sizes[img_idx].astype(float)
    bw, bh = rng.uniform(4, 200, n_boxes), rng.uniform(4, 200, n_boxes)
    x, y = rng.uniform(0, 1, n_boxes) * (wh[:, 0] - bw), rng.uniform(0, 1, n_boxes) * (wh[:, 1] - bh)
    cats = rng.integers(1, 11, n_boxes)
    anns = [{"id": k + 1, "image_id": int(img_idx[k]) + 1, "category_id": int(cats[k]),
             "bbox": [round(float(x[k]), 2), round(float(y[k]), 2), round(float(bw[k]), 2), round(float(bh[k]), 2)],
             "area": float(bw[k] * bh[k]), "iscrowd": 0} for k in range(n_boxes)]
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": c, "name": f"class{c}"} for c in range(1, 11)]}))


def settle() -> None:
    """Same start for each timed run: earlier runs' garbage collected and their dirty pages flushed to disk."""
    gc.collect()
    os.sync()


def read_labels(folder: Path) -> dict[str, np.ndarray]:
    out = {}
    for f in folder.rglob("*.txt"):
        rows = [list(map(float, ln.split())) for ln in f.read_text().splitlines() if ln.strip()]
        if rows:
            out[f.stem] = np.array(sorted(rows))
    return out


def compare(where: str | None, args: argparse.Namespace) -> float:
    """Both tools, alternating, --repeat times each, in fresh output folders under `where`; returns best/best."""
    from ultralytics.data.converter import convert_coco

    from wildtrain.data.coco import load_coco
    from wildtrain.data.yolo_layout import write_labels

    with tempfile.TemporaryDirectory(dir=where) as tmp:
        tmp = Path(tmp)
        (tmp / "ann").mkdir()
        make_coco(tmp / "ann" / "train.json", args.boxes, args.per_image)
        ours, theirs = [], []
        for k in range(args.repeat):
            settle()
            t0 = time.perf_counter()
            write_labels(load_coco(tmp / "ann" / "train.json"), tmp / f"ours{k}")
            ours.append(time.perf_counter() - t0)
            settle()
            t0 = time.perf_counter()
            convert_coco(str(tmp / "ann"), str(tmp / f"ultra{k}"), cls91to80=False)
            theirs.append(time.perf_counter() - t0)
        a, b = read_labels(tmp / "ours0"), read_labels(tmp / "ultra0")
        same = a.keys() == b.keys() and all(
            a[k].shape == b[k].shape and np.allclose(a[k], b[k], rtol=1e-5, atol=1e-6) for k in a)
        fs = os.popen(f"stat -f -c %T {tmp}").read().strip()  # file system type, for the record
    ratio = min(theirs) / min(ours)
    print(f"in {where or tempfile.gettempdir()} ({fs}):")
    print(f"  wildtrain (load_coco + write_labels): best {min(ours):6.2f} s  median {np.median(ours):5.2f} s"
          f"  (runs: {', '.join(f'{t:.2f}' for t in ours)})")
    print(f"  ultralytics convert_coco:             best {min(theirs):6.2f} s  median {np.median(theirs):5.2f} s"
          f"  (runs: {', '.join(f'{t:.2f}' for t in theirs)})")
    print(f"  speed-up: best vs best {ratio:.1f}x, median vs median {np.median(theirs) / np.median(ours):.1f}x;"
          f"  identical labels (to %g precision): {same}; load average "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return ratio


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--boxes", type=int, default=200_000)
    ap.add_argument("--per-image", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dir", action="append", default=None,
                    help="where input and outputs go; repeatable (default: the system temp dir, then /dev/shm)")
    args = ap.parse_args()
    from ultralytics.utils import LOGGER

    LOGGER.setLevel("WARNING")
    dirs = args.dir or [None] + (["/dev/shm"] if os.path.isdir("/dev/shm") else [])
    print(f"COCO -> YOLO, {args.boxes} boxes on {args.boxes // args.per_image} images, {args.repeat} runs each")
    for where in dirs:
        compare(where, args)


if __name__ == "__main__":
    main()
