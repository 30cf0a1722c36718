"""`wildtrain predict SOURCE`: a trained model on a user's images — files, folders, archives, lists, GeoTIFFs.

The model is loaded once; images are read a few at a time and large ones are sliced (the model's training size,
in memory), their slices batched across images. An unreadable file is named in the report and skipped; the
rest is predicted, and the result says the run was partial.
"""

from __future__ import annotations

import time
from pathlib import Path

from wildtrain import families
from wildtrain.params import Params
from wildtrain.prediction import sources
from wildtrain.prediction.writers import Outputs
from wildtrain.registry import resolve

CHUNK_PIXELS = 64_000_000  # images read per predict call: about this many pixels (or `batch` images)


def predict(p: Params, root: Path, source: str, out: str, model: str | None = None, draw: bool = False,
            **overrides) -> dict:
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
    writer = Outputs(out_dir, predictor.card, draw)
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
                    image, geo = sources.read(item)
                except (OSError, ValueError) as e:
                    writer.skip(item, str(e) or type(e).__name__)
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
    return report
