"""A user's 1 GB survey folder: `wildtrain data add` (copy + `dvc add`) vs the plain tools doing the same
(`cp -r` + `dvc add`), then the prepare stage on it (`dvc repro prepare`: every image decoded, validated,
hashed, twins and near-twins looked for), and `dvc status` afterwards. Ratios of one run, in one repo copy.

    python benchmarks/data_add_prepare.py [--gigabytes 1.0] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def survey(folder: Path, gigabytes: float, seed: int = 0) -> tuple[int, int]:
    """2000x1500 JPEGs of textured ground with a few dark 'animals', COCO annotations; until `gigabytes`."""
    rng = np.random.default_rng(seed)
    images, annotations, total = [], [], 0
    (folder / "images").mkdir(parents=True)
    base = rng.integers(70, 150, (1500, 2000, 3), dtype=np.uint8)
    while total < gigabytes * 1e9:
        k = len(images) + 1
        ground = np.roll(base, (k * 37) % 1500, axis=0) ^ rng.integers(0, 24, (1500, 2000, 3), dtype=np.uint8)
        boxes = []
        for _ in range(int(rng.integers(2, 8))):
            x, y = int(rng.integers(0, 1960)), int(rng.integers(0, 1460))
            ground[y:y + 30, x:x + 30] = 20
            boxes.append([float(x), float(y), 30.0, 30.0])
        name = f"IMG_{k:05d}.JPG"
        Image.fromarray(ground).save(folder / "images" / name, quality=92)
        total += (folder / "images" / name).stat().st_size
        images.append({"id": k, "file_name": name, "width": 2000, "height": 1500})
        annotations += [{"id": len(annotations) + 1, "image_id": k, "category_id": 1, "bbox": b, "area": 900,
                         "iscrowd": 0} for b in boxes]
    (folder / "annotations.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                                         "categories": [{"id": 1, "name": "buffalo"}]}))
    return len(images), total


def timed(args: list[str], cwd: Path, env: dict) -> float:
    t = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t


def main() -> None:
    from conftest import copy_repo, pipeline_env

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gigabytes", type=float, default=1.0)
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="wildtrain-bench-data-", dir=REPO / "benchmarks"))
    try:
        n, size = survey(scratch / "survey", args.gigabytes)
        print(f"survey: {n} JPEGs of 2000x1500, {size / 1e9:.2f} GB")
        plain, ours = copy_repo(scratch / "plain"), copy_repo(scratch / "ours")
        env = pipeline_env(ours)
        subprocess.run(["sync"], check=False)
        t_plain = timed(["cp", "-r", str(scratch / "survey"), "data/source/survey"], plain, env)
        t_plain += timed([sys.executable, "-m", "dvc", "add", "data/source/survey"], plain, env)
        subprocess.run(["sync"], check=False)
        t_ours = timed([sys.executable, "-m", "wildtrain.cli", "data", "add", str(scratch / "survey")], ours, env)
        print(f"data add: wildtrain {t_ours:.1f} s, cp -r + dvc add {t_plain:.1f} s: ratio {t_ours / t_plain:.2f}")
        subprocess.run(["git", "add", "-A"], cwd=ours, check=True, env=env)
        subprocess.run(["git", "commit", "-qm", "survey"], cwd=ours, check=True, env=env)
        t_prep = timed([sys.executable, "-m", "dvc", "repro", "prepare"], ours, env)
        report = json.loads((ours / "data/reports/validation.json").read_text())
        t_status = timed([sys.executable, "-m", "dvc", "status"], ours, env)
        print(f"prepare (dvc repro prepare): {t_prep:.1f} s for {report['images']['in']} images "
              f"({report['images']['in'] / t_prep:.1f} images/s, {size / 1e6 / t_prep:.0f} MB/s), "
              f"{report['boxes']['kept']} boxes; dvc status afterwards {t_status:.1f} s; on {os.cpu_count()} cores")
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
