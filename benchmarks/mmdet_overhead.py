"""Seconds per training iteration: our mmdet train stage vs mmengine's Runner called directly, same config.

Both run in this process, interleaved (after one untimed warm-up each), on the same tiny synthetic
dataset and the config our framework module builds, so the only difference is what the stage adds (MLflow
run, dvclive, the epoch and checkpoint hooks, the slim checkpoint and the model folder). Two figures per run:
s/iter as mmengine's IterTimerHook measures it (mean over the run's iterations), and wall time of the whole
run / iterations (fixed set-up costs included). Prints best-of-N and median ratios (ours / direct); 1.00 = no overhead.

    python benchmarks/mmdet_overhead.py [--model retinanet_r18] [--rounds 3] [--images 40] [--epochs 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import load_line  # noqa: E402
from wildtrain import env  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="retinanet_r18")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--imgsz", type=int, default=128)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="wildtrain-bench-"))
    (root / "dvc.yaml").write_text("stages: {}\n")
    env.configure(root)
    import os

    os.chdir(root)
    from wildtrain.families.detector.mmdet import build_config, mmdet_device, setup
    from wildtrain.params import Mmdet, Params, _build
    from wildtrain.pipeline.convert import convert
    from wildtrain.pipeline.prepare import prepare
    from wildtrain.pipeline.train import train, train_data

    p = _build(Params, {"data": {"synthetic": {"num_images": a.images, "image_size": a.imgsz}},
                        "convert": {"crops": {"enabled": False}}}, "", "bench")
    p = dataclasses.replace(p, train=dataclasses.replace(
        p.train, framework="mmdet", epochs=a.epochs, imgsz=a.imgsz, batch=a.batch, workers=0, device=a.device,
        resume="never", mmdet=Mmdet(model=a.model)))
    prepare(p, root)
    convert(p, root)
    setup()
    from mmengine.runner import Runner

    data = train_data(p, root)
    device = mmdet_device(a.device)

    from mmengine.logging import MessageHub

    def iter_time() -> float:
        """Mean s/iter of the runner that just trained, as its IterTimerHook recorded it."""
        return float(MessageHub.get_current_instance().get_scalar("train/time").mean())

    def ours() -> tuple[float, int, float]:
        t0 = time.perf_counter()
        card = train(p, root)
        return time.perf_counter() - t0, card["extra"]["iterations"], iter_time()

    def direct() -> tuple[float, int, float]:
        workdir = root / "runs" / "direct"
        shutil.rmtree(workdir, ignore_errors=True)
        t0 = time.perf_counter()
        runner = Runner.from_cfg(build_config(p.train, data, workdir, root, device))
        runner.train()
        return time.perf_counter() - t0, runner.iter, iter_time()

    ours(), direct()  # warm-up: imports, MLflow store creation, first-call caches
    wall = {"ours": [], "direct": []}
    timer = {"ours": [], "direct": []}
    for r in range(a.rounds):
        for name, fn in (("ours", ours), ("direct", direct)) if r % 2 == 0 else (("direct", direct), ("ours", ours)):
            seconds, iters, s_iter = fn()
            wall[name].append(seconds / iters)
            timer[name].append(s_iter)
            print(f"round {r + 1} {name:6s}: {seconds:.2f} s for {iters} iterations ({seconds / iters:.3f} s/iter "
                  f"wall), {s_iter:.3f} s/iter by IterTimerHook", flush=True)
    for label, d in (("IterTimerHook s/iter", timer), ("wall s/iter", wall)):
        best = min(d["ours"]) / min(d["direct"])
        median = statistics.median(d["ours"]) / statistics.median(d["direct"])
        print(f"{a.model} on {device}, {label}: ours {min(d['ours']):.3f}, direct Runner {min(d['direct']):.3f}; "
              f"ratio best-of-{a.rounds} {best:.3f}, median {median:.3f}")
    print(f"machine: {load_line()}")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
