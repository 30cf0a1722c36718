"""Stage `prepare`: produce the raw dataset (synthetic or the user's COCO folder) with a hashed manifest."""

from __future__ import annotations

import shutil
from pathlib import Path

from wildtrain.data import synthetic
from wildtrain.data.coco import CocoDataset, load_coco
from wildtrain.errors import WildtrainError
from wildtrain.io import replaced_dir, write_json
from wildtrain.params import Params
from wildtrain.tracking.lineage import dataset_hash, hash_tree

ANNOTATIONS, MANIFEST, IMAGES = "annotations.json", "manifest.json", "images"


def import_coco_folder(source: Path, annotations: str, images: str, out: Path) -> CocoDataset:
    """Copy a user's COCO file and the images it names into out/; every referenced image must exist."""
    ann_path = source / annotations
    ds = load_coco(ann_path)
    if not ds.images:
        raise WildtrainError(f"{ann_path}: no images")
    image_dir = source / images
    missing = [im["file_name"] for im in ds.images if not (image_dir / im["file_name"]).is_file()]
    if missing:
        raise WildtrainError(f"{ann_path}: {len(missing)} image(s) not found under {image_dir} (first: {missing[0]})")
    for im in ds.images:
        name = Path(im["file_name"])
        if name.is_absolute() or ".." in name.parts:
            raise WildtrainError(f"{ann_path}: image file_name '{im['file_name']}' must be relative, without '..'")
        dst = out / IMAGES / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image_dir / name, dst)
    return ds


def summarize(ds: CocoDataset, digest: str, source: str) -> dict:
    with_boxes = {a["image_id"] for a in ds.annotations}
    return {"source": source, "dataset_hash": digest, "images": len(ds.images), "boxes": len(ds.annotations),
            "empty_images": len(ds.images) - len(with_boxes), "classes": ds.class_counts()}


def prepare(p: Params, root: Path) -> dict:
    d = p.data
    with replaced_dir(root / p.paths.raw) as tmp:
        if d.source == "synthetic":
            s = d.synthetic
            ds = synthetic.generate(tmp, s.num_images, s.image_size, s.max_objects, s.empty_fraction, d.seed)
        else:
            source = Path(d.source) if Path(d.source).is_absolute() else root / d.source
            if not source.is_dir():
                raise WildtrainError(f"params.yaml: data.source: '{d.source}' is neither 'synthetic' nor a folder "
                                     f"holding a COCO file ({d.annotations}) and its images ({d.images}/)")
            ds = import_coco_folder(source, d.annotations, d.images, tmp)
        ds.info = {"description": f"wildtrain raw dataset ({d.source})", "image_root": IMAGES}
        ds.save(tmp / ANNOTATIONS)
        files = hash_tree(tmp)
        digest = dataset_hash(files)
        write_json(tmp / MANIFEST, {"dataset_hash": digest, "files": files})
    summary = summarize(ds, digest, d.source)
    write_json(root / p.paths.metrics / "data.json", summary)
    print(f"prepare: {summary['images']} images, {summary['boxes']} boxes, dataset {digest[:12]}")
    return summary
