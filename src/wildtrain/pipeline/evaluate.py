"""Stage `evaluate`: predict the test split with any framework, score the COCO detections with COCOeval."""

from __future__ import annotations

from pathlib import Path

from wildtrain.data.coco import load_coco
from wildtrain.evaluate import plots
from wildtrain.evaluate.detection import BACKGROUND, coco_eval, confusion_pairs, to_coco_results
from wildtrain.evaluate.sliced import sliced_predict
from wildtrain.io import read_json, write_json
from wildtrain.models import get_adapter
from wildtrain.params import Params
from wildtrain.pipeline.convert import image_root
from wildtrain.pipeline.train import TRAIN_INFO


def evaluate(p: Params, root: Path) -> dict:
    e = p.evaluate
    info = read_json(root / p.paths.models / TRAIN_INFO, "training info")
    coco_file = root / p.paths.coco / f"{e.split}.json"
    ds = load_coco(coco_file)
    tiling = ds.info.get("tiling")
    if tiling:  # trained on tiles: predict the full-size images slice by slice, score the full annotations
        coco_file = coco_file.parent / ds.info["full"]
        ds = load_coco(coco_file)
    images = [image_root(coco_file, ds) / im["file_name"] for im in ds.images]
    adapter = get_adapter(info["framework"])
    checkpoint = root / p.paths.models / info["checkpoint"]
    kw = dict(imgsz=info["imgsz"], conf=e.conf, iou=e.iou, max_det=e.max_det, batch=e.batch, device=e.device)
    if tiling:
        kw.pop("max_det")
        dets = sliced_predict(adapter, checkpoint, images, size=tiling["size"], overlap=tiling["overlap"],
                              merge_ios=e.merge_ios, max_det=e.max_det, **kw)
    else:
        dets = adapter.predict(checkpoint, images, **kw)
    results = to_coco_results(ds, dets)
    write_json(root / p.paths.predictions / f"{e.split}.json", results, indent=None)
    ev = coco_eval(ds, results)
    rows = confusion_pairs(ds, results, e.confusion_conf, e.confusion_iou)
    plot_dir = root / p.paths.plots
    write_json(plot_dir / "pr_curve.json", ev.pop("pr_curve"))
    write_json(plot_dir / "confusion.json", rows)
    curves, recall = ev.pop("pr_curves_by_class", {}), ev.pop("recall_thresholds", [])
    plots.pr_curves_png(plot_dir / "pr_curve.png", recall, curves, f"PR at IoU 0.5 ({e.split})")
    plots.confusion_png(plot_dir / "confusion.png", rows, [*ds.class_names, BACKGROUND])
    metrics = {"split": e.split, "framework": info["framework"], "images": len(ds.images),
               "detections": len(results), "sliced": bool(tiling), **ev}
    write_json(root / p.paths.metrics / "eval.json", metrics)
    print(f"evaluate: {e.split} mAP50-95 {metrics['map50_95']:.4f}, mAP50 {metrics['map50']:.4f}")
    return metrics
