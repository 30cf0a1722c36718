"""What every format reader shares: finding image files, naming them, and the lenient record they return.

Readers return a `CocoDataset` that may still hold bad input — a missing file, a NaN box, an unknown
label — so that validation can count and report it instead of a reader crashing or dropping it.
Private keys (leading `_`) carry that state and are removed by validation:
  image `_path` (absolute Path, or None when the annotation names a file that is not there),
  image `_problem` (why the image cannot be used), image `_unlisted` (no annotation file mentions it),
  annotation `_problem` (why the box cannot be used), annotation `_normalized` (YOLO: bbox still in 0..1).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from wildtrain.data.coco import CocoDataset

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")


def image_files(root: Path) -> list[Path]:
    """Every image under root (recursive, sorted), skipping hidden folders such as .git."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [Path(dirpath) / f for f in sorted(filenames) if f.lower().endswith(IMAGE_EXTS)]
    return out


def images_dir(root: Path, images: str) -> Path:
    """The folder file names are relative to: `data.images` inside the source if it exists, else the source."""
    d = root / images
    return d if images and d.is_dir() else root


def relative_name(path: Path, base: Path, root: Path) -> str:
    """A file's canonical name: relative to the images folder when inside it, else to the source root."""
    for b in (base, root):
        try:
            return path.relative_to(b).as_posix()
        except ValueError:
            continue
    return path.name


def unsafe_name(name: str) -> bool:
    """Absolute, drive-qualified or `..` names could write outside the dataset folder: refused."""
    p = PurePosixPath(name.replace("\\", "/"))
    return not p.parts or p.is_absolute() or ".." in p.parts or ":" in p.parts[0]


def add_unlisted(ds: CocoDataset, base: Path, root: Path, skip: set[Path] = frozenset()) -> None:
    """Images on disk that no annotation mentions are negatives (kept, counted as `without_annotation_file`)."""
    listed = {im["_path"].resolve() for im in ds.images if im.get("_path") is not None} | {p.resolve() for p in skip}
    next_id = max((im["id"] for im in ds.images if isinstance(im.get("id"), int)), default=0) + 1
    for path in image_files(base):
        if path.resolve() in listed:
            continue
        ds.images.append({"id": next_id, "file_name": relative_name(path, base, root), "_path": path,
                          "_unlisted": True})
        next_id += 1


def categories_from_names(names: list[str]) -> tuple[list[dict], dict[str, int]]:
    """Formats that label by name (VOC, CSV): categories sorted by name, ids 1..n."""
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(sorted(set(names)))]
    return cats, {c["name"]: c["id"] for c in cats}


def flat_name(file_name: str) -> str:
    """Sub-folders folded into the file name, for layouts with one flat image folder."""
    return file_name.replace("/", "__")


def num(v: float) -> str:
    """Shortest text that reads back as the same float (round trips are exact)."""
    f = float(v)
    return str(int(f)) if f.is_integer() and abs(f) < 1e15 else repr(f)
