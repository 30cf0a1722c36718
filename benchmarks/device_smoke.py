"""Smoke-run the detector family and the evaluator on whatever device `auto` picks (CUDA where present).

Checks the parts that only a GPU exercises: device selection, AMP (with the offline AMP-check guard), training
through the train stage, prediction through the loaded Predictor (whole and sliced) on CUDA, and COCO scoring of
the predictions by the evaluate stage. Runs in a throw-away project (its own MLflow sqlite store).

    python benchmarks/device_smoke.py --epochs 3 --images 48 --imgsz 320
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import scratch_project, small_params, survey_image  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--no-amp", dest="amp", action="store_false", help="train in full precision")
    args = ap.parse_args()

    root = scratch_project("wildtrain-smoke-")
    import torch

    from wildtrain import families
    from wildtrain.devices import resolve_device
    from wildtrain.pipeline.convert import convert
    from wildtrain.pipeline.evaluate import evaluate
    from wildtrain.pipeline.prepare import prepare
    from wildtrain.pipeline.train import train

    p = small_params(root, images=args.images, imgsz=args.imgsz, epochs=args.epochs, batch=16, workers=2,
                     device=args.device, amp=args.amp)
    p = dataclasses.replace(p, evaluate=dataclasses.replace(p.evaluate, device=args.device))
    prepare(p, root)
    convert(p, root)
    t0 = time.perf_counter()
    card = train(p, root)
    train_s = time.perf_counter() - t0
    ev = evaluate(p, root)
    predictor = families.load(root / p.paths.models, args.device)
    large = survey_image(1, 4 * args.imgsz, 3 * args.imgsz)
    t0 = time.perf_counter()
    sliced = predictor.predict([large], conf=0.25)[0]
    sliced_s = time.perf_counter() - t0
    print(json.dumps({
        "device": resolve_device(args.device), "amp": args.amp, "cuda": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "torch": torch.__version__,
        "epochs": card["training"]["epochs_completed"], "train_s": round(train_s, 1),
        "test_map50": round(ev["map50"], 4), "test_map50_95": round(ev["map50_95"], 4),
        "sliced_image": f"{large.shape[1]}x{large.shape[0]}", "sliced_boxes": len(sliced.boxes),
        "sliced_s": round(sliced_s, 3),
    }, indent=2))
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
