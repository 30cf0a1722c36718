"""Sliced mask prediction of one large survey image (2,300 x 2,500 px by default): seconds and peak memory.

The segmenter of params.yaml (the pipeline's trained `models_segmenter/` when it exists, else the same
architecture freshly built: speed and memory do not depend on the weights) predicts a synthetic scene cut into
overlapping windows of its training image size, batched, their class probabilities blended into one map.
Wall and CPU time (the process's, all threads: the work done, which other jobs on shared cores move less) are
both reported. Memory is the process's resident set sampled every 5 ms (torch's allocations are invisible to tracemalloc):
the peak during prediction and its rise over the level before it. Prints and writes
benchmarks/results/sliced_masks.json.

    python benchmarks/sliced_masks.py --width 2500 --height 2300 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from common import load_line  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class PeakRss:
    """The highest resident set seen while the block runs."""

    def __enter__(self):
        self.before = self.peak = rss_mb()
        self.running = True
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _watch(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_mb())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, rss_mb())


def model_folder(work: Path) -> tuple[Path, str]:
    """The pipeline's segmenter, or one of the same architecture with fresh weights."""
    from wildtrain import params
    from wildtrain.data.synthetic import SPECIES
    from wildtrain.contract import ModelCard
    from wildtrain.families.segmenter.network import build
    from wildtrain.io import write_torch

    trained = REPO / "models_segmenter"
    if (trained / "model.json").is_file():
        return trained, "models_segmenter (trained)"
    p = params.load(REPO / "params.yaml")
    s = p.segmenter
    names = ["background", *(sp.name for sp in SPECIES)]
    model = build(s.encoder, s.encoder_depth, s.decoder_channels, len(names))
    write_torch(work / "model.pt", model.state_dict())
    ModelCard(family="segmenter", task="semantic-segmentation", framework="lightning", architecture=f"unet-{s.encoder}",
              class_names=names, weights="model.pt",
              input={"size": s.imgsz, "image_size": p.data.synthetic.image_size, "overlap": 0.2, "encoder": s.encoder,
                     "encoder_depth": s.encoder_depth, "decoder_channels": s.decoder_channels}).save(work)
    return work, "fresh weights, params.yaml architecture"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=2500)
    ap.add_argument("--height", type=int, default=2300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    import numpy as np
    import torch

    from wildtrain import env, families
    from wildtrain.data.synthetic import render_scene
    from wildtrain.slicing import windows

    work = Path(tempfile.mkdtemp(prefix="wildtrain-bench-masks-"))
    env.configure(work)
    folder, which = model_folder(work)
    predictor = families.load(folder, "cpu")
    side = max(args.width, args.height)
    scene, _ = render_scene(np.random.default_rng(7), side, int(side ** 2 / 320 ** 2 * 5))
    image = np.ascontiguousarray(np.asarray(scene)[:args.height, :args.width])
    predictor.predict([image[:320, :320]], batch=args.batch)  # warm-up (first-call allocations)
    size = int(predictor.card.input["image_size"])
    n_windows = len(windows(args.width, args.height, size, float(predictor.card.input["overlap"])))
    runs = []
    for _ in range(args.repeats):
        with PeakRss() as mem:
            start, cpu = time.perf_counter(), time.process_time()
            (mask,) = predictor.predict([image], batch=args.batch)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        runs.append({"seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2), "peak_rss_mb": round(mem.peak, 1),
                     "rise_mb": round(mem.peak - mem.before, 1)})
    classes = len(predictor.card.class_names)
    result = {"image": [args.width, args.height], "model": which, "encoder": predictor.card.architecture,
              "imgsz": predictor.card.input["size"], "window": size, "windows": n_windows, "batch": args.batch,
              "classes": classes, "runs": runs, "best_seconds": min(r["seconds"] for r in runs),
              "best_cpu_seconds": min(r["cpu_seconds"] for r in runs),
              "peak_rss_mb": max(r["peak_rss_mb"] for r in runs), "rise_mb": max(r["rise_mb"] for r in runs),
              "probability_accumulator_mb": round(classes * args.width * args.height * 4 / 2**20, 1),
              "mask_shape": list(mask.mask.shape), "threads": torch.get_num_threads(), "load": load_line()}
    out = REPO / "benchmarks" / "results" / "sliced_masks.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
