"""`wildtrain predict SOURCE`: a trained model on a user's images — files, folders, archives, lists, GeoTIFFs.

The model is loaded once; images are read a few at a time and large ones are sliced (the model's training size,
in memory), their slices batched across images. GeoTIFFs (and TIFFs too large for memory) are streamed window
by window in bounded memory (prediction.raster). A file that cannot be read — whatever library raises — is named
in the report and skipped; the rest is predicted, and the result says the run was partial.
"""

from __future__ import annotations

import time
from pathlib import Path

from wildtrain import families
from wildtrain.params import Params
from wildtrain.prediction import raster, sources
from wildtrain.prediction.writers import Outputs
from wildtrain.registry import resolve

CHUNK_PIXELS = 64_000_000  # images read per predict call: about this many pixels (or `batch` images)


def predict(p: Params, root: Path, source: str, out: str, model: str | None = None, draw: bool = False,
            areas: str | None = None, classes: str | None = None, **overrides) -> dict:
    """Predict every image of `source` into the folder `out`; `overrides` replace params.yaml `predict` values."""
    from tqdm import tqdm

    from wildtrain.tracking import mlflow_run

    mlflow_run.connect(p.tracking.experiment, root)
    folder = resolve(model, [p.two_stage.model_name, p.register.model_name], root / p.paths.runs / "models")
    settings = {**p.predict.__dict__, **{k: v for k, v in overrides.items() if v is not None}}
    predictor = families.load(folder, settings.pop("device"))
    known = predictor.options()
    options = {k: v for k, v in settings.items() if k in known}
    predictor.predict([], **options)  # refuse bad options in one line before any image is read
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = Outputs(out_dir, predictor.card, draw, areas=Path(areas) if areas else None,
                     merge_ios=float(options.get("merge_ios", 0.5)), max_det=options.get("max_det"), classes=classes)
    stream = predictor.card.task in ("object-detection", "semantic-segmentation")
    started = time.perf_counter()
    with sources.items(Path(source)) as todo:
        bar = tqdm(total=len(todo), unit="img", desc="predict", dynamic_ncols=True, leave=True)
        pending: list[tuple] = []

        def flush() -> None:
            for (item, image, geo), pred in zip(pending, predictor.predict([im for _, im, _ in pending], **options)):
                writer.add(item, image, geo, pred)
            bar.update(len(pending))
            pending.clear()

        try:
            for item in todo:
                try:
                    big = raster.open_raster(item) if stream else None
                    image, geo = sources.read(item) if big is None else (None, None)
                except Exception as e:  # noqa: BLE001 — any library, any reason: this file is skipped and named
                    writer.skip(item, str(e) if isinstance(e, sources.Unreadable) else sources.reason(e))
                    bar.update(1)
                    continue
                if big is not None:
                    flush()  # outputs keep the source's order
                    try:
                        _predict_raster(predictor, big, options, writer, draw)
                    except raster.Unreadable as e:
                        writer.skip(item, str(e))
                    bar.update(1)
                    continue
                pending.append((item, image, geo))
                if len(pending) >= options.get("batch", 16) or sum(x[1].size // 3 for x in pending) >= CHUNK_PIXELS:
                    flush()
            if pending:
                flush()
        finally:
            bar.close()  # before any error line, so that line is not glued to the bar
    seconds = time.perf_counter() - started
    report = writer.close({"model": str(model or folder), "model_card": {k: getattr(predictor.card, k) for k in (
        "family", "framework", "architecture", "class_names")}, "options": options, "seconds": round(seconds, 3),
        "images_per_s": round(len(writer.images) / seconds, 3) if seconds > 0 else None})
    skipped = f", {len(report['skipped'])} skipped (see {out_dir / 'report.json'})" if report["skipped"] else ""
    unit = " px" if report.get("unit") == "pixels" else ""
    total = ", ".join(f"{n} {c}{unit}" for n, c in report["total"].items() if c)
    print(f"predict: {report['predicted']} images in {seconds:.1f} s ({report['images_per_s']} images/s){skipped}; "
          f"total: {total or 'nothing found'}; outputs in {out_dir}")
    limits = report.get("limits") or {}
    if limits.get("windows_at_max_det"):
        print(f"warning: max_det {limits['max_det_per_window']} was reached in {limits['windows_at_max_det']} of "
              f"{limits['windows']} windows ({len(limits['images_at_max_det'])} images): animals may be missing "
              f"there; raise --max-det (report.json: limits)")
    c = report.get("census") or {}
    if "density_per_km2" in c:
        dup = f" ({sum(c['raw'].values())} before removing animals seen in two frames)" if c["frames_overlap"] else ""
        print(f"census: {c['total']} animals{dup} on {c['area_km2']:.4f} km2 ({c['area_ha']:.2f} ha) surveyed: "
              f"{c['total'] / c['area_km2']:.1f} per km2" if c["area_km2"] else f"census: {c['total']} animals")
    return report


def _predict_raster(predictor, big: raster.Raster, options: dict, writer: Outputs, draw: bool) -> None:
    """One large raster, streamed: the model's own predict on each window (slicing off), merged or blended here."""
    from wildtrain.errors import WildtrainError
    from wildtrain.slicing import slice_size

    card = predictor.card
    try:
        size = slice_size(options.get("slice", "auto"), (big.height, big.width),
                          int(card.input.get("image_size") or card.input["size"]))
    except ValueError as e:
        raise WildtrainError(str(e)) from None
    overlap, batch = float(options.get("overlap", 0.2)), max(1, int(options.get("batch", 16)))
    if card.task == "semantic-segmentation":
        pixels, scan = raster.segment(predictor.probabilities, big, size, writer.mask_path(big.item),
                                      len(card.class_names), overlap=overlap, batch=batch, draw=draw)
        writer.add_raster_mask(big.item, big, pixels, scan)
        return
    window_options = {**options, "slice": "off"}
    det, scan = raster.detect(lambda arrays: predictor.predict(arrays, **window_options), big, size, overlap=overlap,
                              merge_ios=float(options.get("merge_ios", 0.5)), batch=batch, draw=draw)
    writer.add_raster(big.item, big, det, scan)
