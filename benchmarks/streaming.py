"""Peak RSS and images/s of the classifier's training loader reading files vs WebDataset shards (data.stream), as
the training crops grow from 1x to 10x a memory budget, in one run.

The crops are the built-in synthetic survey's own (prepare's generator, convert's crop cutter), repeated until
the training split holds `factor x budget` bytes of PNG; the same bytes are written as files (what the file loader
reads) and as shards (convert's writer). Each measurement is a fresh process that builds the real CropDataModule
(params as `classifier`: imgsz 64, batch 64, 2 workers, the training augmentations) and reads one epoch of its
training loader; a thread samples every 0.5 s the RSS of that process and of its largest DataLoader worker, and
the PSS of them all (RSS with shared pages counted once; summed RSS would count torch's libraries once per
worker); the peaks are the figures. The budget is small because the built-in crops are small (~1 KB each): 10x
4 MiB is ~44,000 crops, an epoch of about a minute per loader on 2 cores. File and stream runs alternate, so machine
noise falls on both. Prints and writes benchmarks/results/streaming.json.

    nice python benchmarks/streaming.py --budget-mb 4 --factors 1 10
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save_result  # noqa: E402


def base_crops(work: Path) -> list[Path]:
    """The built-in dataset's training crops (40 synthetic scenes through convert's crop cutter)."""
    from wildtrain.data import synthetic
    from wildtrain.data.crops import write_crops
    from wildtrain.data.split import split_dataset

    ds = synthetic.generate(work / "raw", num_images=40, image_size=320, max_objects=8, empty_fraction=0.1, seed=0)
    splits = split_dataset(ds, 0.1, 0.1, 0)
    write_crops(splits, work / "raw/images", work / "base", 0.15, 16, 1, 0)
    return sorted((work / "base/train").glob("*/*.png"))


def grow(base: list[Path], val: Path, target_bytes: int, root: Path) -> dict:
    """root/train/<class>/*.png repeating the base crops up to target_bytes, root/val, root/shards."""
    from wildtrain.data.shards import INDEX, write_crop_shards

    sizes = [f.stat().st_size for f in base]
    n = math.ceil(target_bytes / (sum(sizes) / len(sizes)))
    for k in range(n):
        src = base[k % len(base)]
        dst = root / "train" / src.parent.name / f"{k:07d}_{src.name}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    shutil.copytree(val, root / "val")
    (root / "shards").mkdir()
    index = write_crop_shards(root / "train", root / "shards", "train")
    (root / "shards" / INDEX).write_text(json.dumps(index))
    total = sum(f.stat().st_size for f in (root / "train").glob("*/*"))
    return {"crops": n, "bytes": total, "shards": len(index["shards"])}


def memory(pid: int) -> dict:
    """RSS of the loading process and of its largest DataLoader worker (what `top` shows), and the PSS of all of
    them together (shared pages, torch's libraries and the forked parent's heap, counted once)."""
    import psutil

    proc = psutil.Process(pid)
    out = {"main": proc.memory_info().rss, "worker": 0, "pss": 0}
    for p in [proc, *proc.children(recursive=True)]:
        try:
            info = p.memory_full_info()
        except psutil.Error:
            continue
        out["pss"] += info.pss
        if p.pid != pid:
            out["worker"] = max(out["worker"], info.rss)
    return out


def measure(root: Path, stream: bool, workers: int, batch: int) -> dict:
    """One epoch of the real training loader in this process (the child of `run`)."""
    import dataclasses

    from wildtrain import params
    from wildtrain.families.classifier.datamodule import CropDataModule

    cfg = dataclasses.replace(params.Params().classifier, imgsz=64, batch=batch, workers=workers)
    peak, done = {"main": 0, "worker": 0, "pss": 0}, threading.Event()

    def sample():
        while not done.is_set():
            for k, v in memory(os.getpid()).items():
                peak[k] = max(peak[k], v)
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    dm = CropDataModule(root, cfg, stream=stream, buffer=1000)
    loader = dm.train_dataloader()
    t1 = time.perf_counter()
    images = sum(len(y) for _, y in loader)
    t2 = time.perf_counter()
    done.set()
    sampler.join()
    return {"images": images, "setup_s": round(t1 - t0, 2), "epoch_s": round(t2 - t1, 2),
            "images_per_s": round(images / (t2 - t1), 1),
            **{f"peak_{k}_mb": round(v / 2**20, 1) for k, v in peak.items()}}


def run(root: Path, stream: bool, workers: int, batch: int) -> dict:
    cmd = [sys.executable, __file__, "--measure", str(root), "--workers", str(workers), "--batch", str(batch)]
    out = subprocess.run(cmd + (["--stream"] if stream else []), capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"measurement failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-mb", type=float, default=4, help="memory budget; the data grows to factor x this")
    ap.add_argument("--factors", type=float, nargs="+", default=[1, 10])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=1, help="file/stream pairs per factor")
    ap.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--stream", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.stream, args.workers, args.batch)))
        return

    work = Path(tempfile.mkdtemp(prefix="wildtrain-bench-stream-"))
    try:
        base = base_crops(work)
        result = {"budget_mb": args.budget_mb, "workers": args.workers, "batch": args.batch, "cpus": os.cpu_count(),
                  "base_crops": len(base), "runs": []}
        for factor in args.factors:
            root = work / f"x{factor:g}"
            data = grow(base, work / "base/val", int(factor * args.budget_mb * 2**20), root)
            for _ in range(args.repeats):
                for stream in (False, True):
                    row = {"factor": factor, **data, "loader": "stream" if stream else "file",
                           **run(root, stream, args.workers, args.batch)}
                    print(json.dumps(row), flush=True)
                    result["runs"].append(row)
            shutil.rmtree(root)
        summary = {}
        for factor in args.factors:
            rows = [r for r in result["runs"] if r["factor"] == factor]
            best = {k: max(r["images_per_s"] for r in rows if r["loader"] == k) for k in ("file", "stream")}
            mem = {f"peak_{m}_mb": {k: max(r[f"peak_{m}_mb"] for r in rows if r["loader"] == k)
                                    for k in ("file", "stream")} for m in ("main", "worker", "pss")}
            summary[f"x{factor:g}"] = {**mem, "images_per_s": best,
                                       "throughput_ratio": round(best["stream"] / best["file"], 3)}
        result["summary"] = summary
    finally:
        shutil.rmtree(work, ignore_errors=True)
    save_result("streaming", result, summary)


if __name__ == "__main__":
    main()
