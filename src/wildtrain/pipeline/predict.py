"""`wildtrain predict SOURCE`: a trained model on a user's images — files, folders, archives, lists, GeoTIFFs.

The model is loaded once; images are read a few at a time and large ones are sliced (the model's training size,
in memory), their slices batched across images. GeoTIFFs (and TIFFs too large for memory) are streamed window
by window in bounded memory (prediction.raster). A file that cannot be read — whatever library raises — is named
in the report and skipped; the rest is predicted, and the result says the run was partial.

Everything that can be refused is refused before an image is read, in one line: option values, options the
model's family does not take, an output folder holding something else, an empty source. Outside a project it
runs on built-in defaults, and a model folder opens no MLflow store.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

from wildtrain import families
from wildtrain.env import cache_dir, find_project, tracking_uri
from wildtrain.errors import WildtrainError
from wildtrain.params import PREDICT_CHECKS, Params
from wildtrain.prediction import raster, sources
from wildtrain.prediction.writers import Outputs
from wildtrain.registry import resolve_model
from wildtrain.tasks import task_of

CHUNK_PIXELS = 64_000_000  # images read per predict call: about this many pixels (or `batch` images)
# What a predict run writes under --out (besides the files its report.json lists): --overwrite removes these and
# nothing else, and a folder holding anything else is refused.
OUTPUT_FILES = ("report.json", "detections.json", "detections.csv", "detections.geojson", "detections.gpkg",
                "counts.csv", "census.csv", "classifications.csv", "areas.csv")
OUTPUT_FOLDERS = ("masks", "draw")


def flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def check_values(given: dict) -> dict:
    """The options given on the command line, normalized; a value params.yaml would refuse is one line naming it."""
    given = {k: (str(v).strip().lower() if k in ("slice", "device", "precision") else v) for k, v in given.items() if v is not None}
    for key, value in given.items():
        ok, must = PREDICT_CHECKS.get(key, (None, None))
        if ok is not None and not ok(value):
            raise WildtrainError(f"{flag(key)} {value:g}: {must}" if isinstance(value, float) else
                                 f"{flag(key)} {value}: {must}")
    if "device" in given:
        from wildtrain.devices import resolve_device

        resolve_device(given["device"], "--device")
    return given


def previous_outputs(out_dir: Path, source: Path, overwrite: bool) -> list[Path]:
    """What an earlier predict run left in --out, for --overwrite to remove once this run is ready to write.

    --out must be new, empty, or hold only a predict run's outputs (refused without --overwrite); a folder holding
    anything else is refused, and nothing in it is removed. Hidden files (.DS_Store) are left alone."""
    if out_dir.exists() and not out_dir.is_dir():
        raise WildtrainError(f"--out {out_dir}: is a file, not a folder")
    if source.is_dir() and (out_dir.resolve() == source.resolve() or source.resolve() in out_dir.resolve().parents):
        raise WildtrainError(f"--out {out_dir}: is inside the source folder {source}, whose next run would read "
                             f"its outputs as images: give a folder outside it")
    if not out_dir.is_dir():
        return []
    entries = sorted(e for e in out_dir.iterdir() if not e.name.startswith(".") or e.name.endswith(".tmp"))
    if not entries:
        return []
    ours = set(OUTPUT_FILES) | set(OUTPUT_FOLDERS)
    previous = _report(out_dir / "report.json")
    if previous is None:
        ours.discard("report.json")
    else:
        ours |= {f for f in previous.get("files", []) if isinstance(f, str)}
    foreign = [e.name for e in entries if e.name not in ours and not e.name.endswith(".tmp")]
    if foreign:
        listed = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise WildtrainError(f"--out {out_dir}: holds files that are not wildtrain predict outputs ({listed}): give "
                             f"a new or empty folder (nothing there is removed, even with --overwrite)")
    if not overwrite:
        model = (previous or {}).get("model")
        which = f" (model {model.get('uri') or model.get('folder')})" if isinstance(model, dict) else ""
        raise WildtrainError(f"--out {out_dir}: holds a previous predict run's outputs{which}: give --overwrite to "
                             f"replace them, or another --out")
    return entries


def _report(path: Path) -> dict | None:
    """A predict run's report.json, or None when the file is absent or something else."""
    from wildtrain.io import read_json

    if not path.is_file():
        return None
    try:
        report = read_json(path, "report")
    except WildtrainError:
        return None
    return report if isinstance(report, dict) and {"images_in", "model_card"} <= set(report) else None


def remove(entries: list[Path]) -> None:
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink(missing_ok=True)


def family_options(predictor, defaults: dict, given: dict, draw: bool) -> dict:
    """The model's predict options: the defaults it takes, with the given ones; a given option its family does not
    take is refused in one line instead of being ignored."""
    known = predictor.options()
    card = predictor.card
    for key in given:
        if key not in known:
            takes = ", ".join(flag(k) for k in known if k in PREDICT_CHECKS)
            raise WildtrainError(f"{flag(key)} does not apply to a {card.family} model ({card.architecture}); it "
                                 f"takes {takes}, --device")
    if draw and not task_of(card).drawn:
        raise WildtrainError(f"--draw does not apply to a {card.family} model: it gives one label per image, no "
                             f"boxes or masks to draw")
    return {k: v for k, v in {**defaults, **given}.items() if k in known}


def model_cache(p: Params, root: Path, uri: str) -> Path:
    """Registered versions are downloaded into the project's runs/models/, or outside a project into the user cache,
    one folder per tracking URI (two servers may both have a version 3 of a name)."""
    if find_project(root):
        return root / p.paths.runs / "models"
    return cache_dir() / "models" / hashlib.sha256(uri.encode()).hexdigest()[:12]


def predict(p: Params, root: Path, source: str, out: str, model: str | None = None, draw: bool = False,
            overwrite: bool = False, areas: str | None = None, classes: str | None = None,
            **overrides) -> dict:
    """Predict every image of `source` into the folder `out`; `overrides` replace params.yaml `predict` values."""
    from tqdm import tqdm

    given = check_values(overrides)
    if not Path(source).exists():
        raise WildtrainError(f"{source}: no such file or folder")
    out_dir = Path(out)
    previous = previous_outputs(out_dir, Path(source), overwrite)
    uri = tracking_uri(root)
    ref = resolve_model(model, [p.two_stage.model_name, p.register.model_name], model_cache(p, root, uri), uri)
    settings = {**p.predict.__dict__, **given}
    predictor = families.load(ref.folder, settings.pop("device"))
    given.pop("device", None)
    options = family_options(predictor, settings, given, draw)
    predictor.predict([], **options)  # refuse bad options in one line before any image is read
    print(f"predict: {ref.describe()} ({predictor.card.family}, {predictor.card.architecture})")
    if (areas or classes) and not task_of(predictor.card).boxes:
        used = " and ".join(f for f, v in (("--areas", areas), ("--classes", classes)) if v)
        raise WildtrainError(f"{used} does not apply to a {predictor.card.family} model: it counts no animals")
    writer = Outputs(out_dir, predictor.card, draw, areas=Path(areas) if areas else None,
                     merge_ios=float(options.get("merge_ios", 0.5)), max_det=options.get("max_det"), classes=classes)
    stream = task_of(predictor.card).streamed
    started = time.perf_counter()
    with sources.items(Path(source)) as todo:
        if not todo:
            raise WildtrainError(f"no images found in {source} (looked for {', '.join(sources.IMAGE_SUFFIXES)})")
        remove(previous)
        out_dir.mkdir(parents=True, exist_ok=True)
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
    report = writer.close({"model": ref.record(), "model_card": {k: getattr(predictor.card, k) for k in (
        "family", "framework", "architecture", "class_names")}, "options": options, "seconds": round(seconds, 3),
        "images_per_s": round(len(writer.images) / seconds, 3) if seconds > 0 else None})
    skipped = f", {len(report['skipped'])} skipped (see {out_dir / 'report.json'})" if report["skipped"] else ""
    unit = " px" if report.get("unit") == "pixels" else ""
    total = ", ".join(f"{n} {c}{unit}" for n, c in report["total"].items() if c)
    print(f"predict: {report['predicted']} images in {seconds:.1f} s ({report['images_per_s']} images/s){skipped}; "
          f"total: {total or 'nothing found'}; model: {ref.describe()}; outputs in {out_dir}")
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
    from wildtrain.slicing import slice_size

    card = predictor.card
    try:
        size = slice_size(options.get("slice", "auto"), (big.height, big.width),
                          int(card.input.get("image_size") or card.input["size"]))
    except ValueError as e:
        raise WildtrainError(str(e)) from None
    overlap, batch = float(options.get("overlap", 0.2)), max(1, int(options.get("batch", 16)))
    if task_of(card).writes == "masks":
        pixels, scan = raster.segment(predictor.probabilities, big, size, writer.mask_path(big.item),
                                      len(card.class_names), overlap=overlap, batch=batch, draw=draw)
        writer.add_raster_mask(big.item, big, pixels, scan)
        return
    # a two-stage model: its detector on the windows; each merged box is then cut from the raster and classified
    classify = getattr(predictor, "classify_regions", None)
    detector = predictor.detector if classify else predictor
    window_options = {k: v for k, v in {**options, "slice": "off"}.items() if k in detector.options()}
    det, scan = raster.detect(lambda arrays: detector.predict(arrays, **window_options), big, size, overlap=overlap,
                              merge_ios=float(options.get("merge_ios", 0.5)), batch=batch, draw=draw)
    if classify:
        with raster.region_reader(big) as read:
            det = classify(det, big.width, big.height, read, int(options["classifier_batch"]))
    writer.add_raster(big.item, big, det, scan)
