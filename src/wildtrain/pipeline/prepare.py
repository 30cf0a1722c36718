"""Stage `prepare`: read the source (synthetic, a folder or an archive, in any supported format), validate
every image and box, and write the raw dataset with a hashed manifest and the validation report."""

from __future__ import annotations

import tempfile
from pathlib import Path

from wildtrain.data import formats, synthetic
from wildtrain.data.coco import CocoDataset
from wildtrain.data.sources import ARCHIVES, is_archive, open_source
from wildtrain.data.validate import near_duplicate_warning, summary_line, validate
from wildtrain.errors import WildtrainError
from wildtrain.io import replaced_dir, write_json
from wildtrain.layout import ANNOTATIONS, IMAGES, MANIFEST
from wildtrain.layout import VALIDATION_REPORT as REPORT
from wildtrain.params import Data, Params
from wildtrain.tracking.lineage import dataset_hash, hash_tree



def read_source(d: Data, root: Path, out_images: Path) -> tuple[CocoDataset, dict]:
    """The validated dataset (images written under out_images) and its report, from `data.source`."""
    if d.source == "synthetic":
        s = d.synthetic
        with tempfile.TemporaryDirectory(prefix="wildtrain-synthetic-") as stage:
            ds = synthetic.generate(stage, s.num_images, s.image_size, s.max_objects, s.empty_fraction, d.seed)
            for im in ds.images:
                im["_path"] = Path(stage) / IMAGES / im["file_name"]
            clean, report = validate(ds, out_images, d.invalid_boxes, d.group_regex, where="synthetic")
        return clean, {"format": "synthetic", "format_reason": "built-in generator", **report}
    source = Path(d.source) if Path(d.source).is_absolute() else root / d.source
    if not (source.is_dir() or (source.is_file() and is_archive(source))):
        raise WildtrainError(f"params.yaml: data.source: '{d.source}' is neither 'synthetic', a folder, nor a "
                             f"{'/'.join(ARCHIVES)} archive")
    with open_source(source) as folder:
        if d.format == "auto":
            fmt, why = formats.detect(folder, d.annotations)
        else:
            fmt, why = d.format, "data.format"
        raw, ann_file = formats.read(folder, fmt, d.annotations, d.images)
        where = source / ann_file.relative_to(folder) if ann_file != folder else source
        clean, report = validate(raw, out_images, d.invalid_boxes, d.group_regex, where=str(where),
                                 unannotated=d.unannotated)
    return clean, {"format": fmt, "format_reason": why, **report}


def prepare(p: Params, root: Path) -> dict:
    d = p.data
    with replaced_dir(root / p.paths.raw) as tmp:
        ds, report = read_source(d, root, tmp / IMAGES)
        ds.info = {"description": f"wildtrain raw dataset ({d.source})", "image_root": IMAGES}
        ds.save(tmp / ANNOTATIONS)
        files = hash_tree(tmp)
        digest = dataset_hash(files)
        write_json(tmp / MANIFEST, {"dataset_hash": digest, "files": files})
    report = {"source": d.source, "dataset_hash": digest, **report}
    report_file = root / p.paths.reports / REPORT
    write_json(report_file, report)
    print(f"prepare: {d.source}: format {report['format']} ({report['format_reason']}); {summary_line(report)}; "
          f"dataset {digest[:12]}; report {p.paths.reports}/{REPORT}")
    if warning := near_duplicate_warning(report):
        print(f"prepare: warning: {warning}")
    return report
