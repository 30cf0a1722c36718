"""Sliced inference on large survey images: `wildtrain predict`'s path vs SAHI's get_sliced_prediction.

Same Ultralytics weights (a YOLO11n model folder trained by the pipeline's own train stage, cached in
benchmarks/results/), same slice size (the model's training size) and overlap (0.2), same merging (greedy
non-maximum merging on intersection over the smaller box, 0.5, per class), same thresholds (conf 0.25, NMS IoU
0.7, max_det 300), both reading the same JPEG files. Cases: one 2,300 x 2,500 px image, and a folder of 20 such.

- wildtrain: the model is loaded once; files are read and predicted in chunks as `wildtrain predict` does
  (pipeline/predict.py), the slices of all images in a chunk batched together (Predictor.predict).
- sahi: AutoDetectionModel (ultralytics) loaded once, get_sliced_prediction per file (its default batch_size=1;
  --sahi-batch N adds a SAHI contender with batch_size=N).
- `wildtrain predict` as a whole (--whole): the command's function on the same files, which also loads the model
  and writes its outputs (COCO JSON, CSV, counts).

Contenders alternate (the order flips every repeat), after one untimed warm-up each; prints best and median wall
times and CPU times of this process (all in one process, one torch thread as Ultralytics sets it on 2 cores: the
CPU time is the work done, what other jobs on a shared machine do not change), the ratios to SAHI, and the
fraction of boxes matched one-to-one (same class, IoU >= 0.9) between wildtrain and SAHI.
Writes benchmarks/results/sliced_vs_sahi.json. --bf16 adds `wildtrain predict --precision bf16` (backbone in
bfloat16, head in fp32) and counts its boxes matched to fp32's.

Findings (issue 24 item 6; docs/census-performance.md has the tables): the default (fp32, batches of 16 windows
across images) gives the same boxes as before and is bound by the network's convolutions (~77% of the time); batch
size beyond 16, channels_last and torch.compile did not make it faster on this CPU, so its CPU-time ratio to SAHI
stays 0.5-0.87 (trained baseline: 0.613 at 2048 px and 0.542 at 4096 px with the default avx2 kernel pin; 0.765
and 0.869 native). Only bf16 (opt-in; 146 of 146 and 499 of 502 of the trained model's fp32 boxes matched) goes
below 0.5x SAHI (0.447 at 2048 px, 0.446 at 4096 px), and only with WILDTRAIN_CPU_KERNELS=native on CPUs with
AMX/AVX512-BF16: under the avx2 pin bfloat16 is emulated, ~3x slower.
The machine is shared: contenders are interleaved in one run and the medians compared; CPU seconds are the steadier
figure.

    python benchmarks/sliced_vs_sahi.py [--model FOLDER] [--images 20] [--repeat 3] [--width 2300 --height 2500]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, load_line, pipeline_model, scratch_project, survey_image  # noqa: E402


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every xywh box in a against every xywh box in b."""
    ax2, ay2, bx2, by2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2) - np.maximum(a[:, None, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2) - np.maximum(a[:, None, 1], b[:, 1]), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + b[:, 2] * b[:, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def matched(a, b, threshold: float = 0.9) -> int:
    """Greedy one-to-one matches between two Detections (best score first; same class, IoU >= threshold)."""
    if not a.boxes or not b.boxes:
        return 0
    ious = iou_matrix(np.asarray(a.boxes, float), np.asarray(b.boxes, float))
    ious[np.asarray(a.classes)[:, None] != np.asarray(b.classes)[None, :]] = 0
    used, n = np.zeros(len(b.boxes), bool), 0
    for i in np.argsort(-np.asarray(a.scores), kind="stable"):
        row = np.where(used, 0, ious[i])
        j = int(np.argmax(row))
        if row[j] >= threshold:
            used[j] = True
            n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a detector model folder (default: train one with the pipeline, cached)")
    ap.add_argument("--images", type=int, default=20, help="images in the folder case")
    ap.add_argument("--width", type=int, default=2300)
    ap.add_argument("--height", type=int, default=2500)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--sahi-batch", type=int, default=0, help="also time SAHI with this batch_size (0: no)")
    ap.add_argument("--whole", action="store_true", help="also time the whole `wildtrain predict` function")
    ap.add_argument("--bf16", action="store_true", help="also time wildtrain with --precision bf16 (boxes close to, "
                                                        "not identical to, fp32's: matched against them)")
    ap.add_argument("--old-net", action="store_true",
                    help="also time the same slicing with YOLO.predict as the net (YoloNet before it called "
                         "Ultralytics' steps directly)")
    ap.add_argument("--tag", default="", help="results file suffix: benchmarks/results/sliced_vs_sahi_TAG.json")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads for every contender, set after the warm-up (0: as Ultralytics sets them, "
                         "cpu_count - 1)")
    args = ap.parse_args()

    folder = Path(args.model).resolve() if args.model else pipeline_model()
    root = scratch_project("wildtrain-bench-sliced-")
    try:
        run(args, folder, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(args: argparse.Namespace, folder: Path, root: Path) -> None:
    from PIL import Image

    from wildtrain import families, params
    from wildtrain.contract import Detections
    from wildtrain.pipeline.predict import CHUNK_PIXELS, predict
    from wildtrain.prediction import sources

    images_dir = root / "survey"
    images_dir.mkdir()
    for i in range(args.images):
        Image.fromarray(survey_image(100 + i, args.width, args.height)).save(images_dir / f"IMG_{i:04d}.JPG",
                                                                             quality=95)
    paths = sorted(images_dir.iterdir())
    predictor = families.load(folder, "cpu")
    card = predictor.card
    size = int(card.input.get("image_size") or card.input["size"])
    overlap = float(card.input.get("overlap", 0.2))
    options = {"conf": args.conf, "iou": 0.7, "max_det": 300, "slice": "auto", "overlap": overlap, "merge_ios": 0.5,
               "batch": 16}

    def ours(files: list[Path], precision: str = "fp32") -> list[Detections]:
        """pipeline/predict.py's loop without its writers: read, chunk, predict."""
        out, pending = [], []
        opts = {**options, "precision": precision}
        for path in files:
            image, _ = sources.read(sources.Item(path.name, path))
            pending.append(image)
            if len(pending) >= options["batch"] or sum(im.size // 3 for im in pending) >= CHUNK_PIXELS:
                out += predictor.predict(pending, **opts)
                pending = []
        return out + (predictor.predict(pending, **opts) if pending else [])

    from sahi import AutoDetectionModel
    from sahi.predict import get_sliced_prediction

    sahi_model = AutoDetectionModel.from_pretrained(model_type="ultralytics", model_path=str(folder / card.weights),
                                                    confidence_threshold=args.conf, device="cpu", image_size=size)

    def sahi(files: list[Path], batch_size: int = 1) -> list[Detections]:
        out = []
        for path in files:
            res = get_sliced_prediction(str(path), sahi_model, slice_height=size, slice_width=size,
                                        overlap_height_ratio=overlap, overlap_width_ratio=overlap,
                                        perform_standard_pred=False, postprocess_type="GREEDYNMM",
                                        postprocess_match_metric="IOS", postprocess_match_threshold=0.5,
                                        postprocess_class_agnostic=False, force_postprocess_type=True, verbose=0,
                                        batch_size=batch_size)
            preds = res.object_prediction_list
            out.append(Detections([list(map(float, p.bbox.to_xywh())) for p in preds],
                                  [int(p.category.id) for p in preds], [float(p.score.value) for p in preds]))
        return out

    p = params.load(root / "params.yaml")
    whole_runs = iter(range(10 ** 6))

    def whole(files: list[Path]) -> None:
        predict(p, root, str(images_dir if len(files) > 1 else files[0]), str(root / f"out{next(whole_runs)}"),
                model=str(folder), device="cpu", conf=args.conf)

    def old_net(files: list[Path]) -> list[Detections]:
        """The same slicing and merging, the slices predicted by YOLO.predict on BGR copies (the former YoloNet)."""
        from ultralytics import YOLO

        from wildtrain.slicing import predict_sliced, slice_size

        yolo = old_net.__dict__.setdefault("yolo", YOLO(str(folder / card.weights), task="detect"))

        def net(arrays):
            results = yolo.predict([np.ascontiguousarray(a[..., ::-1]) for a in arrays], imgsz=int(card.input["size"]),
                                   conf=options["conf"], iou=options["iou"], max_det=options["max_det"],
                                   device="cpu", verbose=False, batch=len(arrays))
            return [Detections([[x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in r.boxes.xyxy.tolist()],
                               r.boxes.cls.int().tolist(), r.boxes.conf.tolist()) for r in results]

        arrays = [sources.read(sources.Item(path.name, path))[0] for path in files]
        return predict_sliced(net, arrays, [slice_size("auto", a.shape, size) for a in arrays], overlap=overlap,
                              merge_ios=0.5, max_det=options["max_det"], batch=options["batch"])

    contenders = {"wildtrain": ours, "sahi": sahi}
    if args.old_net:
        contenders["wildtrain_old_net"] = old_net
    if args.bf16:
        contenders["wildtrain_bf16"] = lambda files: ours(files, "bf16")
    if args.sahi_batch:
        contenders[f"sahi_batch{args.sahi_batch}"] = lambda files: sahi(files, args.sahi_batch)
    if args.whole:
        contenders["wildtrain_predict_command"] = whole
    cases = {"one image": paths[:1], **({f"folder of {len(paths)}": paths} if len(paths) > 1 else {})}
    for fn in contenders.values():  # warm-up: first inference, lazy imports, Ultralytics' thread setting
        fn(paths[:1])
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    results: dict = {"model": str(folder), "architecture": card.architecture, "slice": size, "overlap": overlap,
                     "conf": args.conf, "image": f"{args.width}x{args.height}", "repeat": args.repeat,
                     "torch_threads": torch.get_num_threads(), "cases": {}}
    from wildtrain.data.tiling import windows

    slices = len(windows(args.width, args.height, size, overlap))
    print(f"{card.architecture} sliced at {size} px, overlap {overlap}: {slices} slices per {args.width}x{args.height} "
          f"image; conf {args.conf}; CPU, {torch.get_num_threads()} torch thread(s), {load_line()} at start",
          flush=True)
    for case, files in cases.items():
        times: dict[str, list[float]] = {name: [] for name in contenders}
        cpu: dict[str, list[float]] = {name: [] for name in contenders}
        found: dict[str, list] = {}
        loads = []
        for r in range(args.repeat):
            order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
            for name in order:
                t0, c0 = time.perf_counter(), time.process_time()
                got = contenders[name](files)
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
                if got is not None:
                    found[name] = got
            loads.append(load_line())
        boxes = {name: sum(len(d.boxes) for d in dets) for name, dets in found.items()}
        agree = sum(matched(a, b) for a, b in zip(found["wildtrain"], found["sahi"]))
        entry = {"images": len(files), "seconds": {k: [round(t, 3) for t in v] for k, v in times.items()},
                 "best_s": {k: round(min(v), 3) for k, v in times.items()},
                 "median_s": {k: round(statistics.median(v), 3) for k, v in times.items()},
                 "boxes": boxes, "matched_iou_0.9": agree,
                 "matched_fraction_of_wildtrain": round(agree / max(boxes["wildtrain"], 1), 4),
                 "matched_fraction_of_sahi": round(agree / max(boxes["sahi"], 1), 4),
                 "ratio_best": {k: round(min(v) / min(times["sahi"]), 3) for k, v in times.items()},
                 "ratio_median": {k: round(statistics.median(v) / statistics.median(times["sahi"]), 3)
                                  for k, v in times.items()},
                 "cpu_s": {k: [round(t, 3) for t in v] for k, v in cpu.items()},
                 "cpu_ratio_best": {k: round(min(v) / min(cpu["sahi"]), 3) for k, v in cpu.items()},
                 "cpu_ratio_median": {k: round(statistics.median(v) / statistics.median(cpu["sahi"]), 3)
                                      for k, v in cpu.items()},
                 "load": loads}
        if "wildtrain_bf16" in found:
            entry["bf16_matched_iou_0.9_of_fp32"] = sum(matched(a, b) for a, b in zip(found["wildtrain"],
                                                                                      found["wildtrain_bf16"]))
        results["cases"][case] = entry
        print(f"{case} ({len(files)} x {slices} slices):")
        for name in contenders:
            print(f"  {name:26s} wall: best {min(times[name]):7.2f} s, median {statistics.median(times[name]):7.2f} s "
                  f"(/sahi {entry['ratio_best'][name]:.3f}, {entry['ratio_median'][name]:.3f});  cpu: best "
                  f"{min(cpu[name]):7.2f} s, median {statistics.median(cpu[name]):7.2f} s (/sahi "
                  f"{entry['cpu_ratio_best'][name]:.3f}, {entry['cpu_ratio_median'][name]:.3f})"
                  + (f"  {boxes[name]} boxes" if name in boxes else ""))
        print(f"  boxes matched (same class, IoU >= 0.9): {agree} of {boxes['wildtrain']} (wildtrain) / "
              f"{boxes['sahi']} (sahi); {loads[-1]}", flush=True)
        if "wildtrain_bf16" in found:
            print(f"  bf16 boxes matched to fp32's (same class, IoU >= 0.9): "
                  f"{entry['bf16_matched_iou_0.9_of_fp32']} of {boxes['wildtrain']} (fp32) / "
                  f"{boxes['wildtrain_bf16']} (bf16)", flush=True)
    out = RESULTS / f"sliced_vs_sahi{'_' + args.tag if args.tag else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
