"""Which next model does `annotate push --strategy uncertainty` give, against `--strategy random`, at equal N?

Simulated reviewers on the built-in synthetic survey: a reviewer returns each pushed image's true labels. One run:

1. prepare + convert the built-in data (the real stages): train / val / test splits.
2. The first L images of the train split are labelled; the rest are the unlabelled pool.
3. Model 0: the real train stage on the L images (from yolo11n.yaml).
4. Pick N pool images with the selection functions `annotate push` calls (select.by_uncertainty on model 0's
   scores at select.FLOOR with push's predict options; select.by_chance with --seed for random).
5. Per pick: the L + N images with their true labels become the train split; the train stage fine-tunes model 0
   on them. Replicates: seed k trains both arms with train.seed k and draws the random arm's images with seed k.
6. Each next model is evaluated on the same test split by the evaluate code (COCOeval, bootstrap 95% intervals
   over test images). Per seed, uncertainty against random by the paired bootstrap the register gate uses (test
   images only); across seeds, the difference of the arms' means with a Welch 95% interval, which also holds the
   training's and the draw's spread: "beyond noise" only when that interval excludes 0.

    nice python benchmarks/annotation_selection.py [--labelled 40] [--n 20] [--seeds 0 1 2] [--epochs0 60]

Writes benchmarks/results/annotation_selection.json; model 0 is kept in benchmarks/results/annotation_selection/
(reused by a later run with the same --images, --imgsz, --labelled and --epochs0).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from common import RESULTS, load_line, scratch_project, small_params  # noqa: E402


def set_train_split(p, root: Path, train) -> None:
    """`train` (a CocoDataset) as the train split of the converted data: its COCO file and its YOLO labels."""
    from wildtrain.data.coco import load_coco
    from wildtrain.data.yolo_layout import write_yolo_layout
    from wildtrain.io import replaced_dir
    from wildtrain.layout import IMAGES

    coco = root / p.paths.coco
    splits = {s: load_coco(coco / f"{s}.json") for s in ("val", "test")}
    train.save(coco / "train.json")
    with replaced_dir(root / p.paths.yolo) as tmp:
        write_yolo_layout({"train": train, **splits}, root / p.paths.raw / IMAGES, tmp)


def subset(ds, file_names: list[str]):
    from wildtrain.data.coco import CocoDataset

    keep = set(file_names)
    images = [im for im in ds.images if im["file_name"] in keep]
    ids = {im["id"] for im in images}
    return CocoDataset(images, [a for a in ds.annotations if a["image_id"] in ids], ds.categories, dict(ds.info))


def train_model(p, root: Path, name: str, train_ds, out: Path) -> tuple[Path, float]:
    """The real train stage on `train_ds`; its model folder copied to out/name; (folder, seconds)."""
    from wildtrain.pipeline.train import train

    set_train_split(p, root, train_ds)
    shutil.rmtree(root / p.paths.runs, ignore_errors=True)  # no resume across arms
    t0 = time.perf_counter()
    train(p, root)
    seconds = time.perf_counter() - t0
    folder = out / name
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(root / p.paths.models, folder)
    return folder, seconds


def evaluate(p, root: Path, folder: Path):
    from wildtrain import families
    from wildtrain.evaluate.detection import evaluate_detector

    return evaluate_detector(families.load(folder, "cpu"), p, root, None)


def pool_scores(p, root: Path, model: Path, pool) -> list:
    """Model 0's box scores on each pool image, with the predict options `annotate push` uses (floor select.FLOOR)."""
    from wildtrain import families
    from wildtrain.annotate import select
    from wildtrain.data.images import load_rgb
    from wildtrain.layout import IMAGES

    names = [im["file_name"] for im in pool.images]
    predictor = families.load(model, "cpu")
    options = {k: v for k, v in p.predict.__dict__.items() if k in predictor.options()}
    options["conf"] = min(float(options.get("conf", 0.25)), select.FLOOR)
    scores = []
    for start in range(0, len(names), 8):
        arrays = [load_rgb(root / p.paths.raw / IMAGES / f) for f in names[start:start + 8]]
        scores += [d.scores for d in predictor.predict(arrays, **options)]
    return scores


def pick(pool, n: int, strategy: str, seed: int, scores: list) -> list[str]:
    """The pool images `annotate push --strategy STRATEGY --n N --seed SEED` would push (push's own functions)."""
    from wildtrain.annotate import select

    names = [im["file_name"] for im in pool.images]
    if strategy == "random":
        return [names[k] for k in select.by_chance(len(names), n, seed)]
    return [names[k] for k in select.by_uncertainty(scores, n)]


def summary(metrics: dict) -> dict:
    keys = ("map50", "map50_ci95", "map50_95", "map50_95_ci95", "count_mae", "count_mae_ci95")
    return {k: metrics.get(k) for k in keys}


def spread(values: list[float]) -> dict:
    """Mean and sample sd of one arm's replicates (one training seed each)."""
    import statistics

    return {"values": [round(v, 4) for v in values], "mean": round(statistics.fmean(values), 4),
            "sd": round(statistics.stdev(values), 4) if len(values) > 1 else None}


def welch(a: list[float], b: list[float]) -> dict:
    """mean(a) - mean(b) with its Welch 95% interval: the noise of the training seeds and of the draw, which the
    paired bootstrap over test images does not see. "beyond noise" only when the interval excludes 0."""
    import statistics

    from scipy import stats

    delta = statistics.fmean(a) - statistics.fmean(b)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0:
        return {"delta": round(delta, 4), "ci95": [round(delta, 4)] * 2, "label": "no spread"}
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = stats.t.ppf(0.975, df) * (va + vb) ** 0.5
    low, high = float(delta - half), float(delta + half)
    return {"delta": round(delta, 4), "ci95": [round(low, 4), round(high, 4)], "df": round(float(df), 1),
            "label": "beyond noise" if low > 0 or high < 0 else "within noise"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=170, help="synthetic images (85 train / 17 val / 68 test at 170)")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--labelled", type=int, default=40, help="train images labelled before the loop")
    ap.add_argument("--n", type=int, default=20, help="images pushed per arm")
    ap.add_argument("--epochs0", type=int, default=60, help="epochs of model 0 (enough that it finds animals)")
    ap.add_argument("--epochs", type=int, default=20, help="epochs of each next model (fine-tuned from model 0)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                    help="replicates per arm: seed k trains both arms' next models with train.seed k, and draws "
                         "the random arm's images with seed k (uncertainty's images do not depend on it)")
    args = ap.parse_args()
    if len(args.seeds) < 2:
        ap.error("--seeds: at least two, or there is no spread to judge a difference by")

    from wildtrain.data.coco import load_coco
    from wildtrain.evaluate import bootstrap
    from wildtrain.pipeline.convert import convert
    from wildtrain.pipeline.prepare import prepare

    started = time.perf_counter()
    out = RESULTS / "annotation_selection"
    out.mkdir(parents=True, exist_ok=True)
    cwd = os.getcwd()
    root = scratch_project("wildtrain-bench-select-")
    try:
        p = small_params(root, images=args.images, imgsz=args.imgsz, epochs=args.epochs0, device="cpu",
                         model="yolo11n.yaml", plots=False)
        p = dataclasses.replace(p, register=dataclasses.replace(p.register, export=False))
        prepare(p, root)
        convert(p, root)
        train_all = load_coco(root / p.paths.coco / "train.json")
        names = [im["file_name"] for im in train_all.images]
        labelled, pool = names[:args.labelled], subset(train_all, names[args.labelled:])
        print(f"train split {len(names)} images: {len(labelled)} labelled, pool {len(pool.images)}; "
              f"pushing {args.n} per arm, seeds {args.seeds}", flush=True)
        made = {k: getattr(args, k) for k in ("images", "imgsz", "labelled", "epochs0")}
        model0 = out / "model0"
        if (model0 / "model.json").is_file() and (out / "model0.json").is_file() and \
                json.loads((out / "model0.json").read_text()).get("config") == made:
            s0 = json.loads((out / "model0.json").read_text())["train_seconds"]  # reused: same data and recipe
            print(f"model 0 reused from {model0} (trained in {s0:.0f} s)", flush=True)
        else:
            model0, s0 = train_model(p, root, "model0", subset(train_all, labelled), out)
            (out / "model0.json").write_text(json.dumps({"config": made, "train_seconds": round(s0, 1)}))
        m0, table0 = evaluate(p, root, model0)
        print(f"model 0: {s0:.0f} s, test mAP50 {m0['map50']:.3f} {m0.get('map50_ci95')}", flush=True)

        t0 = time.perf_counter()
        scores = pool_scores(p, root, model0, pool)
        uncertain = pick(pool, args.n, "uncertainty", 0, scores)
        uncertain_s = time.perf_counter() - t0
        seen = sum(len(s) > 0 for s in scores)
        print(f"model 0 keeps a box on {seen} of {len(scores)} pool images at the floor", flush=True)
        if not seen:
            print("model 0 finds nothing in the pool: uncertainty has no signal (a cold start); raise --epochs0",
                  flush=True)
        rows, tables, paired, b = {}, {}, {}, p.evaluate.bootstrap
        for seed in args.seeds:
            # fine-tuned from model 0 (the train section's recipe but for epochs and seed): within a seed the two
            # arms differ only in the images added
            fine = dataclasses.replace(p, train=dataclasses.replace(p.train, epochs=args.epochs, seed=seed,
                                                                    model=str(model0 / "model.pt")))
            for strategy in ("uncertainty", "random"):
                key = f"{strategy}_seed{seed}"
                t0 = time.perf_counter()
                chosen = uncertain if strategy == "uncertainty" else pick(pool, args.n, strategy, seed, scores)
                pick_s = uncertain_s if strategy == "uncertainty" else time.perf_counter() - t0
                folder, seconds = train_model(fine, root, key, subset(train_all, labelled + chosen), out)
                metrics, tables[key] = evaluate(fine, root, folder)
                shutil.rmtree(folder, ignore_errors=True)  # 6 MB each; the numbers are the result
                rows[key] = {"strategy": strategy, "seed": seed, "picked": chosen,
                             "picked_boxes": len(subset(pool, chosen).annotations), "pick_seconds": round(pick_s, 1),
                             "train_seconds": round(seconds, 1), **summary(metrics)}
                print(f"{key}: {rows[key]['picked_boxes']} true boxes in the {len(chosen)} picked; train "
                      f"{seconds:.0f} s; test mAP50 {metrics['map50']:.3f} {metrics.get('map50_ci95')}, mAP50-95 "
                      f"{metrics['map50_95']:.3f} {metrics.get('map50_95_ci95')}", flush=True)
            for metric in ("map50", "map50_95"):
                delta, ci = bootstrap.paired(tables[f"uncertainty_seed{seed}"], tables[f"random_seed{seed}"],
                                             metric, b.resamples, b.seed)
                paired[f"seed {seed}: uncertainty - random: {metric}"] = {"delta": round(delta, 4), "ci95": ci}
                print(f"seed {seed}: uncertainty - random: {metric} {delta:+.3f} {ci}", flush=True)
        arms = {s: {m: spread([r[m] for r in rows.values() if r["strategy"] == s]) for m in ("map50", "map50_95")}
                for s in ("uncertainty", "random")}
        across = {m: welch(arms["uncertainty"][m]["values"], arms["random"][m]["values"]) for m in ("map50", "map50_95")}
        for m, w in across.items():
            print(f"uncertainty - random over seeds {args.seeds}: {m} {w['delta']:+.3f} {w['ci95']} ({w['label']})")
        report = {"config": {**vars(args), "test_images": len(table0.units), "pool": len(pool.images),
                             "pool_boxes": len(pool.annotations), "model": "yolo11n.yaml", "device": "cpu",
                             "batch": p.train.batch, "bootstrap_resamples": b.resamples},
                  "model0": {"train_seconds": round(s0, 1), "pool_images_with_a_box_at_floor": seen, **summary(m0)},
                  "arms": arms, "uncertainty_minus_random": across, "paired_per_seed": paired, "runs": rows,
                  "total_seconds": round(time.perf_counter() - started, 1), "load": load_line()}
        (out.parent / "annotation_selection.json").write_text(json.dumps(report, indent=1))
        print(json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=1))
    finally:
        os.chdir(cwd)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
