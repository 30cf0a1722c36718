"""Optuna trials per hour with 3 workers vs 1 on one machine, on the PostgreSQL storage (`make services`' pair,
started in a temporary folder), tiny trials: the real train + evaluate code per trial.

Each setting runs a fresh study of --trials trials to the end (`wildtrain tune --workers N`); trials per hour =
trials / wall time. On this machine's cores the ratio says how much parallel trials gain when each trial's
training already uses every core (its torch threads); with more cores than one trial uses, expect more.
Writes benchmarks/results/tune_workers.json.

    python benchmarks/tune_workers.py --trials 6 --epochs 2 --imgsz 64
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, load_line, scratch_project, small_params  # noqa: E402
from tracking_server import free_port  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--imgsz", type=int, default=64)
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--workers", type=int, default=3)
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still stops the servers (finally below)
    work = scratch_project("wildtrain-bench-tune-")
    folder = Path(tempfile.mkdtemp(prefix="wildtrain-bench-services-"))
    from wildtrain import services
    from wildtrain.pipeline.convert import convert
    from wildtrain.pipeline.prepare import prepare

    try:
        svc = services.up(folder, free_port(), free_port())
        p = small_params(work, images=args.images, imgsz=160, epochs=args.epochs)  # the tiny config's scenes
        prepare(p, work)
        convert(p, work)
        raw = yaml.safe_load((work / "params.yaml").read_text())
        raw["data"]["synthetic"].update(num_images=args.images, image_size=160)
        raw["train"].update(epochs=args.epochs, imgsz=args.imgsz, batch=8, workers=0, close_mosaic=0)
        env = {**os.environ, **svc.client_env()}
        walls = {}
        for workers in (1, args.workers):
            raw["tune"].update(study=f"bench-{workers}", storage=svc.optuna_storage, n_trials=args.trials,
                               pruner="none", sampler="random",
                               space={"train.lr0": {"type": "float", "low": 0.001, "high": 0.05, "log": True}})
            (work / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "wildtrain.cli", "tune", "--workers", str(workers)], cwd=work,
                           env=env, check=True, stdout=subprocess.DEVNULL)
            walls[workers] = time.perf_counter() - t
        per_hour = {w: args.trials / s * 3600 for w, s in walls.items()}
        result = {"trials": args.trials, "epochs": args.epochs, "imgsz": args.imgsz, "images": args.images,
                  "wall_s": {str(w): round(s, 1) for w, s in walls.items()},
                  "trials_per_hour": {str(w): round(v, 1) for w, v in per_hour.items()},
                  "ratio": round(per_hour[args.workers] / per_hour[1], 3), "cores": os.cpu_count(),
                  "load": load_line()}
    finally:
        services.down(folder)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    out = RESULTS / "tune_workers.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
