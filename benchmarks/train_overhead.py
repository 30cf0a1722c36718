"""Overhead of wildtrain's train stage vs the same Ultralytics training called directly, in one process.

Both train the same model with the same arguments on the same data; the stage adds MLflow + dvclive
logging, the resume fingerprint and the atomic model copy. Runs are interleaved (A B A B ...) so
warm-up and machine noise fall on both. Prints and writes benchmarks/results/train_overhead.json.

    python benchmarks/train_overhead.py --images 48 --epochs 5 --imgsz 160 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, load_line, scratch_project, small_params  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--imgsz", type=int, default=160)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    work = scratch_project("wildtrain-bench-")  # Ultralytics and MLflow write relative to the cwd: all in here
    from wildtrain import env
    from wildtrain.families.detector.yolo import resolve_model_source, train_args
    from wildtrain.pipeline.convert import convert
    from wildtrain.pipeline.prepare import prepare
    from wildtrain.pipeline.train import train, train_data

    p = small_params(work, images=args.images, imgsz=args.imgsz, epochs=args.epochs)
    prepare(p, work)
    convert(p, work)

    env.configure_ultralytics()  # the plain run must not get Ultralytics' own dvclive/MLflow callbacks either
    from ultralytics import YOLO

    plain_args = train_args(p.train, train_data(p, work), work / "runs" / "plain")

    def run_stage() -> float:
        t = time.perf_counter()
        train(p, work)
        return time.perf_counter() - t

    def run_plain() -> float:
        t = time.perf_counter()
        YOLO(resolve_model_source(p.train.model, work)).train(**plain_args)
        return time.perf_counter() - t

    stage_s, plain_s = [], []
    for _ in range(args.repeats):
        plain_s.append(run_plain())
        stage_s.append(run_stage())
    load = load_line()
    ratio = min(stage_s) / min(plain_s)  # best-of-N: the least disturbed run of each
    result = {"images": args.images, "epochs": args.epochs, "imgsz": args.imgsz, "repeats": args.repeats,
              "plain_s": [round(x, 2) for x in plain_s], "stage_s": [round(x, 2) for x in stage_s],
              "ratio_stage_over_plain_best": round(ratio, 4),
              "ratio_stage_over_plain_median": round(statistics.median(stage_s) / statistics.median(plain_s), 4),
              "goal": "<= 1.05", "load": load}
    out = RESULTS / "train_overhead.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
