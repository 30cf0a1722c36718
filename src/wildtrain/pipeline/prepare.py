"""Stage `prepare`: read the source (synthetic, a folder or an archive, in any supported format), validate
every image and box, and write the raw dataset with a hashed manifest and the validation report.

The manifest and report carry the source's DVC hash (`data_source_md5`, from its .dvc file) so that every
model names the exact source version it came from; a source DVC does not version gets one line saying so.
"""

from __future__ import annotations

import shlex
import tempfile
from pathlib import Path

from wildtrain.data import formats, synthetic
from wildtrain.data.coco import CocoDataset
from wildtrain.data.sources import ARCHIVES, is_archive, open_source, versioning
from wildtrain.data.validate import near_duplicate_warning, summary_line, validate
from wildtrain.errors import WildtrainError
from wildtrain.io import replaced_dir, write_json
from wildtrain.layout import ANNOTATIONS, IMAGES, MANIFEST
from wildtrain.layout import VALIDATION_REPORT as REPORT
from wildtrain.params import Data, Params, as_dict
from wildtrain.tracking.lineage import dataset_hash, hash_tree

KEPT_INFO = ("background",)  # what a source's info says that later stages need (image/mask pairs: class 0's name)


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
    masks = as_dict(d.masks)
    with open_source(source) as folder:
        if d.format == "auto":
            fmt, why = formats.detect(folder, d.annotations, masks)
        else:
            fmt, why = d.format, "data.format"
        raw, ann_file = formats.read(folder, fmt, d.annotations, d.images, masks)
        where = source / ann_file.relative_to(folder) if ann_file != folder else source
        clean, report = validate(raw, out_images, d.invalid_boxes, d.group_regex, where=str(where),
                                 unannotated=d.unannotated)
    return clean, {"format": fmt, "format_reason": why, **report}


def source_lineage(d: Data, root: Path) -> dict:
    """The source's DVC hash and .dvc file (None when DVC does not version it, with one line saying so)."""
    none = {"data_source_md5": None, "data_source_dvc": None}
    if d.source == "synthetic":  # generated from params: nothing to version
        return none
    v = versioning(Path(d.source) if Path(d.source).is_absolute() else root / d.source, root)
    if "unversioned" in v:
        print(f"prepare: note: data source '{d.source}' is not versioned by DVC ({v['unversioned']}); "
              f"version it with: wildtrain data add {shlex.quote(d.source)}")
        return none
    if v["stale"]:
        print(f"prepare: note: {d.source} changed since {v['dvc_file']} was written, so its hash is not recorded; "
              f"run `dvc repro` (it re-adds the source first) or `dvc add {shlex.quote(d.source)}`")
        return none
    return {"data_source_md5": v["md5"], "data_source_dvc": v["dvc_file"]}


def review_lineage(d: Data, root: Path) -> dict:
    """`wildtrain annotate pull`'s record (Label Studio project, export, boxes the reviewers changed), if the source
    folder holds one."""
    from wildtrain.io import read_json
    from wildtrain.layout import REVIEW_LINEAGE

    if d.source == "synthetic":
        return {}
    path = (Path(d.source) if Path(d.source).is_absolute() else root / d.source) / REVIEW_LINEAGE
    return {"label_studio": read_json(path, "annotate pull lineage")} if path.is_file() else {}


def prepare(p: Params, root: Path) -> dict:
    d = p.data
    with replaced_dir(root / p.paths.raw) as tmp:
        ds, report = read_source(d, root, tmp / IMAGES)
        lineage = source_lineage(d, root)
        kept = {k: ds.info[k] for k in KEPT_INFO if k in ds.info}
        ds.info = {"description": f"wildtrain raw dataset ({d.source})", "image_root": IMAGES, **kept}
        ds.save(tmp / ANNOTATIONS)
        files = hash_tree(tmp)
        digest = dataset_hash(files)
        write_json(tmp / MANIFEST, {"dataset_hash": digest, "data_source": d.source, **lineage, "files": files})
    report = {"source": d.source, **lineage, **review_lineage(d, root), "dataset_hash": digest, **report}
    report_file = root / p.paths.reports / REPORT
    write_json(report_file, report)
    print(f"prepare: {d.source}: format {report['format']} ({report['format_reason']}); {summary_line(report)}; "
          f"dataset {digest[:12]}; report {p.paths.reports}/{REPORT}")
    if warning := near_duplicate_warning(report):
        print(f"prepare: warning: {warning}")
    return report
