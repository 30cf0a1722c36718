"""COCO detection JSON: non-contiguous category ids, `iscrowd`, images without boxes and extra fields kept.

file_name may be relative to the images folder (CVAT, most tools) or to the source root (Label Studio).
"""

from __future__ import annotations

from pathlib import Path

from wildtrain.data.coco import CocoDataset
from wildtrain.data.formats.base import add_unlisted, images_dir, relative_name, unsafe_name
from wildtrain.errors import WildtrainError
from wildtrain.io import link_or_copy, read_json

NAME = "coco"


def read(root: Path, ann_file: Path, images: str) -> CocoDataset:
    """Structure problems are fatal (one line); bad entries are left for validation to count."""
    raw = read_json(ann_file, "COCO annotation file")
    if not isinstance(raw, dict) or not all(isinstance(raw.get(k), list) for k in ("images", "annotations", "categories")):
        raise WildtrainError(f"{ann_file}: not a COCO detection file (needs lists 'images', 'annotations', 'categories')")
    cats = raw["categories"]
    if not all(isinstance(c, dict) and isinstance(c.get("id"), int) and isinstance(c.get("name"), str) for c in cats):
        raise WildtrainError(f"{ann_file}: every category needs an integer 'id' and a 'name'")
    if len({c["id"] for c in cats}) != len(cats):
        raise WildtrainError(f"{ann_file}: duplicate category ids")
    base = images_dir(root, images)
    out_images = []
    for k, im in enumerate(raw["images"]):
        im = dict(im) if isinstance(im, dict) else {}
        name = im.get("file_name")
        if not isinstance(im.get("id"), int) or not isinstance(name, str) or not name:
            out_images.append({**im, "id": im.get("id"), "file_name": str(name or f"<images[{k}]>"), "_path": None,
                               "_problem": "image entry without an integer 'id' and a 'file_name'"})
            continue
        if unsafe_name(name):
            out_images.append({**im, "_path": None, "_problem": "file_name is absolute or contains '..'"})
            continue
        # Label Studio exports `result.json` beside `images/` with file_name "images/<name>" (relative to the
        # source root), CVAT bare names relative to `images/`: a name is looked up under both.
        path = next((p for p in (base / name, root / name) if p.is_file()), None)
        if path is not None:
            im["file_name"] = relative_name(path, base, root)
        out_images.append({**im, "_path": path})
    anns = [dict(a) if isinstance(a, dict) else {"_problem": "annotation is not an object"} for a in raw["annotations"]]
    ds = CocoDataset(images=out_images, annotations=anns, categories=[dict(c) for c in cats],
                     info=raw.get("info") if isinstance(raw.get("info"), dict) else {})
    add_unlisted(ds, base, root)
    return ds


def write(ds: CocoDataset, image_root: Path, out: Path) -> Path:
    """out/annotations.json + out/images/<file_name> (hard links)."""
    for im in ds.images:
        link_or_copy(image_root / im["file_name"], out / "images" / im["file_name"])
    ds = CocoDataset(ds.images, ds.annotations, ds.categories, {**ds.info, "image_root": "images"})
    ds.save(out / "annotations.json")
    return out / "annotations.json"
