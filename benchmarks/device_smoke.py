"""Smoke-run the YOLO adapter and the evaluator on whatever device `auto` picks (CUDA where present).

Checks the parts that only a GPU exercises: device selection, AMP (with the offline AMP-check guard),
training and prediction on CUDA, and COCO scoring of the predictions. Needs no MLflow/DVC.

    python benchmarks/device_smoke.py --epochs 3 --images 48 --imgsz 320
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--no-amp", dest="amp", action="store_false", help="train in full precision")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="wildtrain-smoke-"))
    os.chdir(work)
    from wildtrain import env

    env.configure(work)
    import torch

    from wildtrain.data import synthetic
    from wildtrain.data.split import split_dataset
    from wildtrain.data.yolo_layout import write_yolo_layout
    from wildtrain.devices import resolve_device
    from wildtrain.evaluate.detection import coco_eval, to_coco_results
    from wildtrain.models.base import TrainData
    from wildtrain.families.detector.yolo import YoloAdapter
    from wildtrain.params import Train

    ds = synthetic.generate(work / "raw", args.images, args.imgsz, 8, 0.1, seed=0)
    splits = split_dataset(ds, 0.15, 0.15, seed=0)
    yaml_path = write_yolo_layout(splits, work / "raw/images", work / "yolo")
    data = TrainData(coco={}, image_root=work / "raw/images", yolo_yaml=yaml_path, class_names=ds.class_names,
                     dataset_hash="smoke")
    cfg = Train(epochs=args.epochs, imgsz=args.imgsz, batch=16, workers=2, device=args.device, amp=args.amp,
                close_mosaic=0)
    epochs: list[tuple[int, float]] = []
    t0 = time.perf_counter()
    result = YoloAdapter().train(cfg, data, work / "runs/yolo", lambda e, m: epochs.append((e, time.perf_counter())))
    train_s = time.perf_counter() - t0
    test = splits["test"]
    images = [work / "raw/images" / im["file_name"] for im in test.images]
    dets = YoloAdapter().predict(result.checkpoint, images, imgsz=args.imgsz, conf=0.001, iou=0.7, max_det=100,
                                 batch=16, device=args.device)
    ev = coco_eval(test, to_coco_results(test, dets))
    print(json.dumps({
        "device": resolve_device(args.device), "amp": args.amp, "cuda": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "torch": torch.__version__,
        "epochs": result.epochs_completed, "train_s": round(train_s, 1),
        "epoch_ends_s": [round(t - t0, 1) for _, t in epochs], "test_map50": round(ev["map50"], 4),
        "test_map50_95": round(ev["map50_95"], 4),
    }, indent=2))


if __name__ == "__main__":
    main()
