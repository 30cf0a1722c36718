"""Annotation formats under one interface: detect, read (to a lenient CocoDataset), write (from a clean one).

Every reader maps its format to the canonical `CocoDataset`; every writer writes from it, so any format
converts to any other through COCO. Readers leave bad entries in place for `data.validate` to count.
Image/mask folder pairs (`masks`) are named by their mask folder and class list (`data.masks`), not an
annotation file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from wildtrain.data.coco import CocoDataset
from wildtrain.data.formats import coco, csv, label_studio, mask_pairs, voc, yolo
from wildtrain.errors import WildtrainError

BOX_FORMATS = ("coco", "voc", "yolo", "csv")  # boxes round-trip exactly; masks hold class maps, not boxes
FORMATS = (*BOX_FORMATS, "masks", "label_studio")  # label_studio: read only (Label Studio's JSON export)
WRITERS: dict[str, Callable[[CocoDataset, Path, Path], Path]] = {
    "coco": coco.write, "voc": voc.write, "yolo": yolo.write, "csv": csv.write, "masks": mask_pairs.write}
MASK_DEFAULTS = {"folder": mask_pairs.MASKS, "classes": mask_pairs.CLASSES, "ignore": mask_pairs.IGNORE}


def _is_coco(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(raw, dict) and "images" in raw and "annotations" in raw


def _is_yolo_yaml(path: Path) -> bool:
    try:
        return bool(yolo.class_names(path))
    except WildtrainError:
        return False


def _is_csv(path: Path) -> bool:
    return set(csv.COLUMNS) <= set(csv.header(path))


CHECKS = {"coco": ("*.json", _is_coco), "voc": ("*.xml", voc.is_voc), "yolo": ("*.y*ml", _is_yolo_yaml),
          "csv": ("*.csv", _is_csv), "label_studio": ("*.json", label_studio.is_export)}


def find_annotations(root: Path, fmt: str, annotations: str, strict: bool = False) -> Path | None:
    """The annotation file of a one-file format: `data.annotations` if it is one, else the only candidate at the
    top (with strict=False, also a lone file of the right kind that fails the check, so its reader can say why)."""
    pattern, check = CHECKS[fmt]
    named = root / annotations if annotations else None
    if named is not None and named.is_file() and named.match(pattern) and check(named):
        return named
    files = sorted(root.glob(pattern))
    found = [p for p in files if check(p)]
    if len(found) > 1:
        raise WildtrainError(f"{root}: several {fmt} annotation files ({', '.join(p.name for p in found[:4])}); "
                             f"name one in data.annotations")
    if not found and len(files) == 1 and not strict:
        return files[0]  # the only candidate: let the reader say what is wrong with it
    return found[0] if found else None


def detect(root: Path, annotations: str, masks: dict | None = None) -> tuple[str, str]:
    """(format, why) for a source folder: the named annotation file decides, else what the folder holds.
    `masks`: data.masks ({folder, classes, ignore}) — where image/mask pairs would be."""
    m = {**MASK_DEFAULTS, **(masks or {})}
    named = root / annotations if annotations else None
    if named is not None and named.is_file():
        by_suffix = {".json": "coco", ".csv": "csv", ".yaml": "yolo", ".yml": "yolo"}
        if named.suffix.lower() in by_suffix:  # the reader reports what is wrong with it, if anything
            fmt = by_suffix[named.suffix.lower()]
            if fmt == "coco" and label_studio.is_export(named):
                fmt = "label_studio"
            return fmt, f"data.annotations {annotations} is {fmt}"
    found = []
    for fmt in ("coco", "yolo", "csv", "label_studio"):
        f = find_annotations(root, fmt, "", strict=True)
        if f is not None:
            found.append((fmt, f"found {f.name}"))
    xmls = [p for p in sorted(root.rglob("*.xml"))[:20] if voc.is_voc(p)]
    if xmls:
        found.append(("voc", f"found VOC XML files ({xmls[0].relative_to(root)}, ...)"))
    if mask_pairs.is_pairs(root, m["folder"], m["classes"]):
        found.append(("masks", f"found {m['folder']}/ and {m['classes']} (image/mask pairs)"))
    if not found:
        raise WildtrainError(f"{root}: no annotations found (looked for a COCO .json, VOC .xml files, a YOLO yaml "
                             f"with names, a CSV with {','.join(csv.COLUMNS)}, a {m['folder']}/ folder with "
                             f"{m['classes']})")
    if len(found) > 1:
        raise WildtrainError(f"{root}: several annotation formats found ({'; '.join(w for _, w in found)}); "
                             f"set data.format")
    return found[0]


def read(root: Path, fmt: str, annotations: str, images: str, masks: dict | None = None) -> tuple[CocoDataset, Path]:
    """Read a source folder in `fmt` into a lenient CocoDataset (see formats.base) + the annotation file read."""
    if fmt == "voc":
        return voc.read(root, images), root
    if fmt == "masks":
        m = {**MASK_DEFAULTS, **(masks or {})}
        if not (root / m["folder"]).is_dir():
            raise WildtrainError(f"{root / m['folder']}: no mask folder (data.masks.folder: '{m['folder']}')")
        return mask_pairs.read(root, images, m["folder"], m["classes"], int(m["ignore"])), root / m["classes"]
    ann = find_annotations(root, fmt, annotations)
    if ann is None:
        raise WildtrainError(f"{root / annotations if annotations else root}: no {fmt} annotation file "
                             f"(data.annotations: '{annotations}')")
    readers = {"coco": coco.read, "yolo": yolo.read, "csv": csv.read, "label_studio": label_studio.read}
    return readers[fmt](root, ann, images), ann


def write(ds: CocoDataset, image_root: Path, out: Path, fmt: str) -> Path:
    if fmt not in WRITERS:
        raise WildtrainError(f"unknown format '{fmt}' to write (known: {', '.join(WRITERS)})")
    return WRITERS[fmt](ds, image_root, out)
