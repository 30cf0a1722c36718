"""CSV `image_path,xmin,ymin,xmax,ymax,label` (DeepForest / ecology layout), continuous pixel corners.

Extra columns are kept per box under `attributes` (a `group` column goes to the image, for splits).
A row with empty coordinates, or all four 0 (DeepForest's convention), marks an image without animals.
image_path is relative to the CSV's folder, else to `data.images`.
"""

from __future__ import annotations

import csv as csvlib
import io
from pathlib import Path

from wildtrain.data.coco import CocoDataset
from wildtrain.data.formats.base import (add_unlisted, categories_from_names, images_dir,
                                         num, relative_name, unsafe_name)
from wildtrain.errors import WildtrainError
from wildtrain.io import link_or_copy, write_text

NAME = "csv"
COLUMNS = ("image_path", "xmin", "ymin", "xmax", "ymax", "label")


def header(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return next(csvlib.reader(f), [])
    except (OSError, UnicodeDecodeError, csvlib.Error):
        return []


def _rows(path: Path) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csvlib.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise WildtrainError(f"{path}: missing column(s) {', '.join(missing)} (needs {','.join(COLUMNS)})")
            return list(reader)
    except (OSError, UnicodeDecodeError, csvlib.Error) as e:
        raise WildtrainError(f"{path}: unreadable CSV ({e})") from None


def read(root: Path, csv_file: Path, images: str) -> CocoDataset:
    rows = _rows(csv_file)
    base = images_dir(root, images)
    coords = COLUMNS[1:5]
    cats, cat_id = categories_from_names([r["label"].strip() for r in rows if (r.get("label") or "").strip()])
    by_path: dict[str, dict] = {}
    anns = []
    for n, r in enumerate(rows, start=2):
        name = (r.get("image_path") or "").strip()
        if name not in by_path:
            im = {"id": len(by_path) + 1, "file_name": name, "_path": None}
            if unsafe_name(name):
                im["_problem"] = "image_path is empty, absolute or contains '..'"
            else:
                found = next((p for p in (csv_file.parent / name, base / name) if p.is_file()), None)
                if found is not None:
                    im["file_name"], im["_path"] = relative_name(found, base, root), found
            if (r.get("group") or "").strip():
                im["group"] = r["group"].strip()
            by_path[name] = im
        image_id = by_path[name]["id"]
        values = [(r.get(c) or "").strip() for c in coords]
        if all(v == "" for v in values) or all(v in ("0", "0.0") for v in values):
            continue  # a negative image
        extra = {k: v for k, v in r.items() if k not in COLUMNS and k != "group" and k is not None}
        a = {"image_id": image_id, "category_id": cat_id.get((r.get("label") or "").strip()), "iscrowd": 0}
        if extra:
            a["attributes"] = extra
        try:
            x1, y1, x2, y2 = (float(v) for v in values)
            a["bbox"] = [x1, y1, x2 - x1, y2 - y1]
        except ValueError:
            a["_problem"] = f"{csv_file.name} row {n}: non-numeric coordinates {values}"
        if a["category_id"] is None and "_problem" not in a:
            a["_problem"] = f"{csv_file.name} row {n}: empty label"
        anns.append(a)
    ds = CocoDataset(images=list(by_path.values()), annotations=anns, categories=cats)
    add_unlisted(ds, base, root)
    return ds


def write(ds: CocoDataset, image_root: Path, out: Path) -> Path:
    """out/annotations.csv + out/images/<file_name>; image_path is relative to the CSV (images/<name>)."""
    names = dict(zip(ds.category_ids, ds.class_names))
    extra = sorted({k for a in ds.annotations for k in a.get("attributes", {})})
    groups = any("group" in im for im in ds.images)
    cols = [*COLUMNS, *extra, *(["group"] if groups else [])]
    buf = io.StringIO()
    w = csvlib.writer(buf, lineterminator="\n")
    w.writerow(cols)
    by_image = ds.annotations_by_image()
    for im in ds.images:
        link_or_copy(image_root / im["file_name"], out / "images" / im["file_name"])
        path = f"images/{im['file_name']}"
        tail = [im.get("group", "")] if groups else []
        if not by_image[im["id"]]:
            w.writerow([path, "", "", "", "", "", *[""] * len(extra), *tail])
        for a in by_image[im["id"]]:
            x, y, bw, bh = a["bbox"]
            attrs = a.get("attributes", {})
            w.writerow([path, num(x), num(y), num(x + bw), num(y + bh), names[a["category_id"]],
                        *[attrs.get(k, "") for k in extra], *tail])
    write_text(out / "annotations.csv", buf.getvalue())
    return out / "annotations.csv"
