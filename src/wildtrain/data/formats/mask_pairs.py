"""Image/mask folder pairs, the layout segmentation users already have: `images/` and `masks/` with matching stems
(sub-folders too), single-channel masks whose pixel values are class indices, a class list (one name per line,
line k = value k; value 0 is the background) and an ignore value (unlabelled pixels).

Reading leaves every mask unread: validation reads each one beside its image (in worker processes), quarantines
what cannot be used — no mask, an unreadable or multi-channel mask, a size other than its image's, values outside
the class list — and turns the rest into one RLE region per class and image (`iscrowd: 1`) plus the image's
`ignore_mask`. A mask drawn on the stored frame of an EXIF-rotated image is rotated with it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wildtrain.data import masks
from wildtrain.data.coco import CocoDataset
from wildtrain.data.formats.base import image_files, images_dir, relative_name
from wildtrain.errors import WildtrainError
from wildtrain.io import link_or_copy, write_text

NAME = "masks"
MASKS, CLASSES, IGNORE = "masks", "classes.txt", 255  # defaults of data.masks.{folder, classes, ignore}


def is_pairs(root: Path, folder: str = MASKS, classes: str = CLASSES) -> bool:
    return (root / folder).is_dir() and (root / classes).is_file()


def class_list(path: Path) -> list[str]:
    """Names by pixel value (blank lines and `#` comments skipped); refused in one line when unusable."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise WildtrainError(f"{path}: unreadable class list ({e})") from None
    names = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    if len(names) < 2:
        raise WildtrainError(f"{path}: a class list needs the background (value 0) and at least one class, one "
                             f"name per line")
    if len(set(names)) != len(names):
        raise WildtrainError(f"{path}: class '{next(n for n in names if names.count(n) > 1)}' is listed twice")
    if len(names) > masks.IGNORE:
        raise WildtrainError(f"{path}: {len(names)} classes; at most {masks.IGNORE} fit an 8-bit class map")
    return names


def read(root: Path, images: str, folder: str = MASKS, classes: str = CLASSES, ignore: int = IGNORE) -> CocoDataset:
    """The lenient dataset: every image with its mask file (`_mask`, None when missing, then `_unlisted`); classes
    1..n-1 as categories with id = pixel value; masks without an image are listed in `info._orphan_masks`."""
    names = class_list(root / classes)
    if 0 <= ignore < len(names):
        raise WildtrainError(f"data.masks.ignore: {ignore} is the value of class '{names[ignore]}' in "
                             f"{root / classes}; pick a value outside 0..{len(names) - 1}")
    mask_root = root / folder
    base = images_dir(root, images)
    by_stem = {}
    for path in image_files(mask_root):
        by_stem.setdefault(path.relative_to(mask_root).with_suffix("").as_posix(), path)
    out, used = [], set()
    for path in image_files(base):
        if mask_root in path.parents:
            continue  # images/ missing, so the source root is the image folder: its masks are not images
        name = relative_name(path, base, root)
        stem = Path(name).with_suffix("").as_posix()
        mask = by_stem.get(stem)
        # An image without a mask is one no annotation mentions: data.unannotated decides (skip: quarantined as
        # missing_mask; negative: all background), as for an image without a label file in every format.
        out.append({"id": len(out) + 1, "file_name": name, "_path": path, "_mask": mask,
                    **({"_unlisted": True} if mask is None else {})})
        used.add(stem)
    cats = [{"id": v, "name": n} for v, n in enumerate(names) if v > 0]
    orphans = sorted(by_stem[s].relative_to(root).as_posix() for s in set(by_stem) - used)
    return CocoDataset(images=out, annotations=[], categories=cats,
                       info={"background": names[0], "_mask_values": len(names), "_mask_ignore": ignore,
                             "_orphan_masks": orphans})


def regions(mask_path: str, size: list[int], stored: list[int], orientation: int, n_values: int,
            ignore: int) -> dict:
    """One image's mask file -> {"regions": [(value, rle, bbox, area)], "ignore_mask": rle | None}, or
    {"mask_error": (reason, detail)}. Runs in validation's worker processes (plain values in and out)."""
    from PIL import Image

    try:
        with Image.open(mask_path) as img:
            img.load()
            mode, arr = img.mode, np.asarray(img)
    except Exception as e:  # noqa: BLE001 — PIL raises many kinds for broken files
        return {"mask_error": ("unreadable_mask", f"unreadable mask {Path(mask_path).name} "
                                                  f"({type(e).__name__}: {e})".replace("\n", " "))}
    if arr.ndim != 2:
        return {"mask_error": ("unreadable_mask", f"mask {Path(mask_path).name} is {mode}: expected one channel "
                                                  f"of class indices")}
    arr = arr.astype(np.int64)
    h, w = arr.shape
    if [w, h] != list(size):
        if orientation in (5, 6, 7, 8) and [w, h] == list(stored):  # drawn on the stored frame: turn it too
            arr = masks.orient_array(arr.astype(np.int32), orientation).astype(np.int64)
        else:
            return {"mask_error": ("mask_size", f"mask {Path(mask_path).name} is {w}x{h}, its image "
                                                f"{size[0]}x{size[1]}")}
    values = np.unique(arr).tolist()
    bad = [v for v in values if not (0 <= v < n_values) and v != ignore]
    if bad:
        return {"mask_error": ("mask_values", f"mask {Path(mask_path).name} has values {bad[:5]} outside the "
                                              f"class list (0..{n_values - 1}) and not the ignore value {ignore}")}
    found = []
    for v in values:
        if 1 <= v < n_values:
            m = arr == v
            found.append((int(v), masks.encode(m), masks.bbox(m), int(m.sum())))
    return {"regions": found, "ignore_mask": masks.encode(arr == ignore) if ignore in values else None}


def write(ds: CocoDataset, image_root: Path, out: Path) -> Path:
    """out/images/<file_name> (hard links), out/masks/<file_name>.png (class maps: value k = k-th class, 255
    ignored; an annotation without a mask is its filled box), out/classes.txt."""
    from PIL import Image

    from wildtrain.io import atomic_path

    by_image = ds.annotations_by_image()
    for im in ds.images:
        link_or_copy(image_root / im["file_name"], out / "images" / im["file_name"])
        class_map = masks.class_map(im, by_image[im["id"]], ds.category_ids, missing="boxes")
        with atomic_path(out / MASKS / Path(im["file_name"]).with_suffix(".png")) as tmp:
            Image.fromarray(class_map).save(tmp, format="PNG")
    write_text(out / CLASSES, "\n".join([ds.info.get("background", "background"), *ds.class_names]) + "\n")
    return out / CLASSES

