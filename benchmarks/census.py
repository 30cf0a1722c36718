"""Census on orthomosaics: memory and time of `wildtrain predict` on GeoTIFF mosaics of growing size, streamed
window by window (prediction.raster) against reading the whole raster into memory (what predict did before), and
sliced predict against SAHI on the largest image SAHI is run on here.

Mosaics: one synthetic survey tile (wildtrain.data.synthetic.render_scene, 2048 px, the training classes at the
pipeline's density) repeated into a tiled (512 px), deflate-compressed GeoTIFF of N x N px, so every size has the same density.
Each measurement runs in its own process (`--child`): max RSS (getrusage) of that process, its CPU seconds, its
wall time, and predict's own seconds; the model is loaded in each. Ratios: RSS and seconds per megapixel of each
size to the smallest size's, streamed to in-memory at the same size.

    python benchmarks/census.py [--sizes 4096 16384 32768] [--in-memory-up-to 16384] [--model FOLDER | --untrained]
                                [--sahi-size 4096]
The SAHI comparison is the median of --sahi-repeat interleaved runs; with WILDTRAIN_CPU_KERNELS=native it also times
`--precision bf16` (under the default avx2 kernel pin bfloat16 is emulated: docs/explanation/census-performance.md).
Writes benchmarks/results/census.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, RESULTS, load_line, pipeline_model  # noqa: E402

TILE = 2048


def write_mosaic(path: Path, side: int) -> int:
    """A side x side GeoTIFF of repeated survey tiles (UTM, 5 cm pixels), written tile by tile; returns the number
    of animals drawn."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    from wildtrain.data.synthetic import render_scene

    img, objects = render_scene(np.random.default_rng(7), TILE, int(TILE * TILE * 5 / 320 ** 2))
    tile = np.moveaxis(np.asarray(img.convert("RGB")), -1, 0)
    animals = 0
    with rasterio.open(path, "w", driver="GTiff", width=side, height=side, count=3, dtype="uint8",
                       crs="EPSG:32733", transform=from_origin(500000.0, 8000000.0, 0.05, 0.05), tiled=True,
                       blockxsize=512, blockysize=512, compress="deflate", BIGTIFF="IF_SAFER") as dst:
        for y in range(0, side, TILE):
            for x in range(0, side, TILE):
                h, w = min(TILE, side - y), min(TILE, side - x)
                dst.write(tile[:, :h, :w], window=Window(x, y, w, h))
                if h == TILE and w == TILE:
                    animals += len(objects)
    return animals


def child(args: argparse.Namespace) -> None:
    """One measurement in this process: the streamed `predict`, or the former in-memory read + Predictor.predict."""
    t0 = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="wildtrain-bench-census-"))
    try:
        if args.mode == "streamed":
            from wildtrain.params import Params
            from wildtrain.pipeline.predict import predict

            report = predict(Params(), root, args.child, str(root / "out"), model=args.model, device="cpu")
            found, seconds = sum(report["total"].values()), report["seconds"]
        else:
            from wildtrain import families
            from wildtrain.prediction import sources

            predictor = families.load(Path(args.model), "cpu")
            s0 = time.perf_counter()
            image, _ = sources.read(sources.Item(Path(args.child).name, Path(args.child)))
            det = predictor.predict([image], **{**predictor.options(), "max_det": 300})[0]
            found, seconds = len(det.boxes), time.perf_counter() - s0
    finally:
        shutil.rmtree(root, ignore_errors=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print("RESULT " + json.dumps({"max_rss_gib": round(usage.ru_maxrss / 2 ** 20, 3), "cpu_s": round(
        usage.ru_utime + usage.ru_stime, 1), "wall_s": round(time.perf_counter() - t0, 1),
        "predict_s": round(seconds, 1), "boxes": found}), flush=True)


def measure(tif: Path, model: Path, mode: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, __file__, "--child", str(tif), "--mode", mode, "--model", str(model)],
                          capture_output=True, text=True, env=env, cwd=tif.parent)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"{mode} on {tif.name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def untrained_model(folder: Path, size: int) -> Path:
    """A YOLO11n model folder of random weights at the pipeline's image size (tests/tiny_models.yolo_detector):
    the same network, memory and arithmetic as a trained one; its boxes are meaningless."""
    sys.path.insert(0, str(REPO / "tests"))
    from tiny_models import yolo_detector

    from wildtrain import env

    env.configure(folder)
    return yolo_detector(folder, size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[4096, 16384, 32768])
    ap.add_argument("--in-memory-up-to", type=int, default=16384, help="also time the former whole-raster read "
                                                                       "up to this size")
    ap.add_argument("--model", help="a detector model folder (default: the pipeline's YOLO11n, trained once)")
    ap.add_argument("--untrained", action="store_true", help="a YOLO11n of random weights at 320 px instead")
    ap.add_argument("--sahi-size", type=int, default=4096, help="side of the image of the SAHI comparison (0: none)")
    ap.add_argument("--sahi-repeat", type=int, default=3, help="interleaved repeats of the SAHI comparison (median)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="streamed", help=argparse.SUPPRESS)
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    if args.child:
        return child(args)

    work = Path(tempfile.mkdtemp(prefix="wildtrain-bench-census-"))
    try:
        if args.model:
            model = Path(args.model).resolve()
        elif args.untrained:
            model = untrained_model(work / "model", 320)
        else:
            model = pipeline_model()
        results = {"model": str(model), "untrained": bool(args.untrained and not args.model), "sizes": {},
                   "started": load_line()}
        for side in args.sizes:
            tif = work / f"mosaic_{side}.tif"
            animals = write_mosaic(tif, side)
            entry = {"megapixels": round(side * side / 1e6, 1), "animals_drawn": animals,
                     "file_gib": round(tif.stat().st_size / 2 ** 30, 3),
                     "streamed": measure(tif, model, "streamed")}
            if side <= args.in_memory_up_to:
                entry["in_memory"] = measure(tif, model, "in_memory")
                entry["rss_streamed_over_in_memory"] = round(
                    entry["streamed"]["max_rss_gib"] / entry["in_memory"]["max_rss_gib"], 3)
            entry["load"] = load_line()
            results["sizes"][str(side)] = entry
            tif.unlink()
            print(f"{side} px: {json.dumps(entry)}", flush=True)
        base = results["sizes"][str(args.sizes[0])]
        for side, entry in results["sizes"].items():
            s = entry["streamed"]
            entry["rss_over_smallest"] = round(s["max_rss_gib"] / base["streamed"]["max_rss_gib"], 3)
            entry["predict_s_per_mpx_over_smallest"] = round(
                (s["predict_s"] / entry["megapixels"]) / (base["streamed"]["predict_s"] / base["megapixels"]), 3)
        out = RESULTS / f"census{'_' + args.tag if args.tag else ''}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")  # kept should the SAHI comparison fail
        if args.sahi_size:
            subprocess.run([sys.executable, str(REPO / "benchmarks" / "sliced_vs_sahi.py"), "--model", str(model),
                            "--images", "1", "--width", str(args.sahi_size), "--height", str(args.sahi_size),
                            "--repeat", str(args.sahi_repeat), "--tag", f"census{args.tag}",
                            *(["--bf16"] if os.environ.get("WILDTRAIN_CPU_KERNELS") == "native" else [])], check=True)
            sahi = json.loads((RESULTS / f"sliced_vs_sahi_census{args.tag}.json").read_text())
            results["sahi"] = {"image": sahi["image"], **sahi["cases"]["one image"]}
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps(results, indent=2))
        print(f"written {out}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
