"""Sliced inference: wildtrain's evaluate.sliced vs SAHI (get_sliced_prediction) on the same model and image.

Same YOLO checkpoint, same large image, same slices (size, overlap), same merge (greedy merging on
intersection over smaller, 0.5). Prints wall time per image for each, the boxes each finds, how many
of them agree (same class, IoU >= 0.5), and each one's mAP50 against the image's known boxes.
Without --model, a YOLO11n is first trained for 30 epochs on synthetic scenes (a few minutes on CPU).

    python benchmarks/sliced_vs_sahi.py [--model models/model.pt --imgsz 320] [--size 1280] [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from wildtrain import env


def train_small_model(workdir: Path, imgsz: int, epochs: int) -> Path:
    from ultralytics import YOLO

    from wildtrain.data import synthetic
    from wildtrain.data.split import split_dataset
    from wildtrain.data.yolo_layout import write_yolo_layout

    ds = synthetic.generate(workdir / "raw", 96, imgsz, 6, 0.1, seed=0)
    yaml_path = write_yolo_layout(split_dataset(ds, 0.15, 0.15, 0), workdir / "raw" / "images", workdir / "yolo")
    model = YOLO("yolo11n.yaml")
    model.train(data=str(yaml_path), epochs=epochs, imgsz=imgsz, batch=8, workers=0, device="cpu", project=str(workdir),
                name="run", exist_ok=True, verbose=False, plots=False, close_mosaic=0)
    return Path(model.trainer.best)


def iou(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter) if inter else 0.0


def agreement(a, b) -> int:
    """Greedy one-to-one matches between two box lists (same class, IoU >= 0.5)."""
    used, n = set(), 0
    for box, cls in sorted(zip(a.boxes, a.classes), key=lambda t: -t[0][2] * t[0][3]):
        for j, (other, c2) in enumerate(zip(b.boxes, b.classes)):
            if j not in used and c2 == cls and iou(box, other) >= 0.5:
                used.add(j)
                n += 1
                break
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="a YOLO .pt (default: train a small one first)")
    ap.add_argument("--imgsz", type=int, default=320, help="slice size = the model's training image size")
    ap.add_argument("--size", type=int, default=1920, help="side of the large test image")
    ap.add_argument("--conf", type=float, default=0.1)
    ap.add_argument("--epochs", type=int, default=30, help="training epochs when no --model is given")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    env.configure(Path(__file__).resolve().parents[1])
    env.configure_ultralytics()
    from sahi import AutoDetectionModel
    from sahi.predict import get_sliced_prediction

    from wildtrain.data.coco import CocoDataset
    from wildtrain.data.synthetic import SPECIES, render_scene
    from wildtrain.data.tiling import windows
    from wildtrain.evaluate.detection import coco_eval, to_coco_results
    from wildtrain.slicing import sliced_predict
    from wildtrain.families.base import Detections
    from wildtrain.families.detector.yolo import YoloAdapter

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        checkpoint = Path(args.model) if args.model else train_small_model(tmp / "train", args.imgsz, args.epochs)
        if not args.model:  # keep it, to rerun the comparison without training: --model <this path>
            kept = Path(__file__).resolve().parent / "results" / "sliced_bench_model.pt"
            kept.parent.mkdir(exist_ok=True)
            shutil.copyfile(checkpoint, kept)
            print(f"trained model kept at {kept}")
        img, anns = render_scene(np.random.default_rng(123), args.size, int(args.size ** 2 / 320 ** 2 * 5))
        path = tmp / "survey.png"
        img.save(path)
        gt = CocoDataset([{"id": 1, "file_name": path.name, "width": args.size, "height": args.size}],
                         [{"id": k + 1, "image_id": 1, "category_id": c + 1, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
                          for k, (c, b) in enumerate(anns)],
                         [{"id": k + 1, "name": s.name} for k, s in enumerate(SPECIES)])
        kw = dict(imgsz=args.imgsz, conf=args.conf, iou=0.7, batch=16, device="cpu")

        def ours() -> Detections:
            return sliced_predict(YoloAdapter(), checkpoint, [path], size=args.imgsz, overlap=0.2, merge_ios=0.5,
                                  max_det=1000, **kw)[0]

        sahi_model = AutoDetectionModel.from_pretrained(model_type="ultralytics", model_path=str(checkpoint),
                                                        confidence_threshold=args.conf, device="cpu",
                                                        image_size=args.imgsz)

        def theirs() -> Detections:
            res = get_sliced_prediction(str(path), sahi_model, slice_height=args.imgsz, slice_width=args.imgsz,
                                        overlap_height_ratio=0.2, overlap_width_ratio=0.2, perform_standard_pred=False,
                                        postprocess_type="GREEDYNMM", postprocess_match_metric="IOS",
                                        postprocess_match_threshold=0.5, force_postprocess_type=True, verbose=0)
            preds = res.object_prediction_list
            return Detections([list(map(float, p.bbox.to_xywh())) for p in preds],
                              [int(p.category.id) for p in preds], [float(p.score.value) for p in preds])

        results, times = {}, {}
        for name, fn in (("wildtrain", ours), ("sahi", theirs)):
            results[name] = fn()  # warm-up (model load, first inference)
            t0 = time.perf_counter()
            for _ in range(args.repeat):
                results[name] = fn()
            times[name] = (time.perf_counter() - t0) / args.repeat
        n_tiles = len(windows(args.size, args.size, args.imgsz, 0.2))
        print(f"sliced inference on one {args.size}x{args.size} image ({len(anns)} animals), {n_tiles} slices of "
              f"{args.imgsz}px, overlap 0.2, conf {args.conf}, CPU")
        for name in results:
            ev = coco_eval(gt, to_coco_results(gt, [results[name]]))
            print(f"  {name:9s}: {times[name]:6.2f} s/image  {len(results[name].boxes):4d} boxes  mAP50 {ev['map50']:.3f}"
                  f"  mAP50-95 {ev['map50_95']:.3f}")
        print(f"  time ratio wildtrain/sahi: {times['wildtrain'] / times['sahi']:.2f}; boxes agreeing (same class, "
              f"IoU >= 0.5): {agreement(results['wildtrain'], results['sahi'])}")


if __name__ == "__main__":
    main()
