"""What the bootstrap intervals cost: CPU seconds of the intervals against the evaluate stage that computes them, and
the vectorised per-image tables against rerunning pycocotools' COCOeval on each resample written out.

The detector is the pipeline's own (benchmarks/common.pipeline_model: YOLO11n trained by the train stage on
synthetic 320 px scenes, cached); the test split is the built-in data's default (170 scenes, 68 test images), made
by the prepare and convert stages in a scratch project. Then, all in this run:
- the evaluate stage as the pipeline runs it (`python stages/evaluate.py detector`, a child process: imports,
  model load, prediction, COCOeval, plots, gallery, intervals), its CPU seconds;
- the intervals alone, from the table that stage wrote (`bootstrap.intervals`, evaluate.bootstrap settings);
- COCOeval on --naive resamples written out as datasets (duplicated images under new ids), per resample, and the
  largest difference from the table's mAP on the same resamples (score ties may order differently).

    python benchmarks/bootstrap_cost.py [--naive 20] [--resamples 1000] [--epochs 30 | --model FOLDER]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, load_line, pipeline_model, scratch_project  # noqa: E402


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def resampled(ds, results: list[dict], draws: list[int]):
    """The resample as a dataset: each drawn image again under a new id, with its boxes and detections."""
    from wildtrain.data.coco import CocoDataset

    by_pos = sorted(ds.images, key=lambda im: im["id"])
    anns_of, dets_of = ds.annotations_by_image(), {}
    for r in results:
        dets_of.setdefault(r["image_id"], []).append(r)
    ims, anns, res = [], [], []
    for n, pos in enumerate(draws):
        im, new = by_pos[pos], n + 1
        ims.append({**im, "id": new})
        for a in anns_of[im["id"]]:
            anns.append({**a, "id": len(anns) + 1, "image_id": new})
        res += [{**r, "image_id": new} for r in dets_of.get(im["id"], [])]
    return CocoDataset(ims, anns, ds.categories), res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--naive", type=int, default=20, help="resamples rerun through COCOeval")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=30, help="of the cached benchmark detector (30: the shared one)")
    ap.add_argument("--model", type=Path, help="a detector model folder to use instead (e.g. a pipeline's models/)")
    args = ap.parse_args()

    model = args.model.resolve() if args.model else pipeline_model() if args.epochs == 30 else \
        pipeline_model(f"yolo11n_320_e{args.epochs}", epochs=args.epochs)
    cwd = os.getcwd()
    root = scratch_project("wildtrain-bench-bootstrap-")
    try:
        from wildtrain import params
        from wildtrain.data.coco import load_coco
        from wildtrain.evaluate import bootstrap
        from wildtrain.evaluate.detection import coco_eval
        from wildtrain.evaluate.detection_table import DetectionTable
        from wildtrain.io import read_json, write_yaml
        from wildtrain.layout import tables_file
        from wildtrain.pipeline.convert import convert
        from wildtrain.pipeline.prepare import prepare

        p = params.load(root / "params.yaml")
        p = dataclasses.replace(p, convert=dataclasses.replace(
            p.convert, crops=dataclasses.replace(p.convert.crops, enabled=False)),
            evaluate=dataclasses.replace(p.evaluate, device="cpu",
                                         bootstrap=dataclasses.replace(p.evaluate.bootstrap,
                                                                       resamples=args.resamples)))
        write_yaml(root / "params.yaml", params.as_dict(p))  # what the stage process reads
        prepare(p, root)
        convert(p, root)
        shutil.copytree(model, root / p.paths.models)

        before = cpu_children()
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(REPO / "stages" / "evaluate.py"), "detector"], cwd=root,
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                  [str(REPO / "src"), os.environ.get("PYTHONPATH", "")])})
        stage_wall, stage_cpu = time.perf_counter() - t0, cpu_children() - before
        if proc.returncode:
            sys.exit(f"evaluate stage failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        print(proc.stdout.strip().splitlines()[-1])

        metrics = read_json(root / p.paths.metrics / "eval.json")
        table, _ = bootstrap.load(root / tables_file(p.paths, "", p.evaluate.split), DetectionTable)
        dets = len(table.det_score)
        c0, t0 = cpu_self(), time.perf_counter()
        found = bootstrap.intervals(table, args.resamples, p.evaluate.bootstrap.seed)
        boot_cpu, boot_wall = cpu_self() - c0, time.perf_counter() - t0

        ds = load_coco(root / p.paths.coco / f"{p.evaluate.split}.json")
        results = read_json(root / p.paths.predictions / f"{p.evaluate.split}.json")
        w = bootstrap.weights(len(table.units), args.naive, 123)
        unit_of = {f"image:{im['file_name']}": pos for pos, im in enumerate(sorted(ds.images, key=lambda m: m["id"]))}
        ours = table.scores(w)
        worst, c0 = 0.0, cpu_self()
        for r in range(args.naive):
            draws = sorted(unit_of[u] for u, k in zip(table.units, w[r]) for _ in range(k))
            theirs = coco_eval(*resampled(ds, results, draws))
            worst = max(worst, abs(theirs["map50"] - ours["map50"][r]), abs(theirs["map50_95"] - ours["map50_95"][r]))
        naive_cpu = (cpu_self() - c0) / args.naive
        vector_cpu = boot_cpu / args.resamples

        print(f"test split: {metrics['images']} images, {dets} detections (conf >= {p.evaluate.conf}), "
              f"{len(table.units)} units; {load_line()}")
        print(f"evaluate stage (child process): {stage_cpu:.2f} CPU s, {stage_wall:.2f} s wall")
        print(f"intervals ({args.resamples} resamples, every metric): {boot_cpu:.2f} CPU s, {boot_wall:.2f} s wall")
        print(f"ratio intervals / evaluate stage (CPU): {boot_cpu / stage_cpu:.3f}")
        print(f"per resample: vectorised {vector_cpu * 1e3:.2f} ms CPU, COCOeval on the resample written out "
              f"{naive_cpu * 1e3:.1f} ms CPU: {naive_cpu / vector_cpu:.0f}x")
        print(f"COCOeval on the {args.resamples} resamples would take ~{naive_cpu * args.resamples:.0f} CPU s "
              f"({naive_cpu * args.resamples / stage_cpu:.1f}x the stage)")
        print(f"largest |table - COCOeval| mAP50 / mAP50-95 on {args.naive} resamples: {worst:.2e}")
        print(f"map50 {metrics['map50']:.4f} {found['map50']}, count_mae {metrics['count_mae']:.3f} "
              f"{found['count_mae']}")
    finally:
        os.chdir(cwd)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
