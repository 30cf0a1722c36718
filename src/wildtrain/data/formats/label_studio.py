"""Label Studio's JSON export (a list of tasks): boxes from `rectanglelabels` results, in percent of the image.

Each task's image is its `data.image` URL: `/data/local-files/?d=<path>` (local-files storage), `/data/upload/<n>/
<8 hex>-<name>` (uploaded) or a plain path. The file is looked up under the images folder, the export's folder and
the source root, by that path and then by its base name (uploads without their 8-hex prefix). A task's reviewed
result is its last annotation that was not cancelled; a task without one is left out (not reviewed yet), and so
is a cancelled task (the reviewer skipped it). The tasks are the dataset: an image on disk that no reviewed task
names is not read as a negative (unlike COCO), since nobody has said it holds no animals.
`polygonlabels` results (what `annotate push` pre-annotates for a segmenter) become masks: a COCO polygon
segmentation in pixels and its bounding box. Results of other kinds (brush, keypoints, choices) are counted in
`info`, not read.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, unquote, urlparse

from wildtrain.data.coco import CocoDataset
from wildtrain.data.formats.base import categories_from_names, images_dir, relative_name, unsafe_name
from wildtrain.errors import WildtrainError
from wildtrain.io import read_json

NAME = "label_studio"
UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")


def is_export(path: Path) -> bool:
    """A JSON list whose first entry is a task (`data` and `annotations` keys)."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(raw, list) and bool(raw) and isinstance(raw[0], dict) and {"data", "annotations"} <= set(raw[0])


def image_ref(task: dict) -> str | None:
    """The path a task's image URL names (local-files `d=`, an upload's file, or the URL's path)."""
    data = task.get("data") if isinstance(task.get("data"), dict) else {}
    url = data.get("image") or next((v for v in data.values() if isinstance(v, str)), None)
    if not isinstance(url, str) or not url:
        return None
    parsed = urlparse(url)
    if "d" in parse_qs(parsed.query):
        return unquote(parse_qs(parsed.query)["d"][0])
    return unquote(parsed.path).lstrip("/")


def find_image(ref: str, places: list[Path]) -> Path | None:
    """The file a task names: by its path, then by its base name (an upload's without its 8-hex prefix)."""
    name = PurePosixPath(ref).name
    names = [ref, name] + ([UPLOAD_PREFIX.sub("", name)] if UPLOAD_PREFIX.match(name) else [])
    for n in names:
        if unsafe_name(n):
            continue
        for place in places:
            if (place / n).is_file():
                return place / n
    return None


def reviewed(task: dict) -> dict | None:
    """The task's last annotation that was not cancelled, or None."""
    anns = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
    return anns[-1] if anns else None


def boxes(result: list) -> tuple[list[tuple[str, list, dict]], int]:
    """(label, [x, y, w, h] in percent, the result) of each rectangle, (label, [[x, y], ...] in percent, the
    result) of each polygon; and how many results were something else."""
    out, other = [], 0
    for r in result if isinstance(result, list) else []:
        value = r.get("value") if isinstance(r, dict) else None
        kind = r.get("type") if isinstance(r, dict) else None
        if kind not in ("rectanglelabels", "polygonlabels") or not isinstance(value, dict):
            other += 1
            continue
        labels = value.get(kind) or [None]
        if kind == "polygonlabels":
            points = value.get("points")
            out.append((labels[0], points if isinstance(points, list) else [], r))
            continue
        try:
            xywh = [float(value[k]) for k in ("x", "y", "width", "height")]
        except (KeyError, TypeError, ValueError):
            xywh = []
        out.append((labels[0], xywh, r))
    return out, other


def polygon(points: list, width: float, height: float) -> list[float]:
    """[[x%, y%], ...] -> a COCO polygon [x1, y1, x2, y2, ...] in pixels; empty when malformed or under 3 points."""
    try:
        pts = [(float(x) * width / 100, float(y) * height / 100) for x, y in points]
    except (TypeError, ValueError):
        return []
    return [round(v, 3) for p in pts for v in p] if len(pts) >= 3 else []


def shape(a: dict, found, r: dict, task_id) -> None:
    """Sets a's bbox (and segmentation for a polygon) from a result, or a's _problem."""
    w, h = r.get("original_width"), r.get("original_height")
    size_ok = all(isinstance(v, (int, float)) and v > 0 for v in (w, h))
    if r.get("type") == "polygonlabels":
        poly = polygon(found, w, h) if size_ok else []
        if not poly:
            a["_problem"] = (f"task {task_id}: a polygon without 3 points [x, y] or the image's "
                             f"original_width/original_height")
            return
        xs, ys = poly[0::2], poly[1::2]
        a["bbox"] = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
        a["segmentation"] = [poly]
        return
    if len(found) != 4 or not size_ok:
        a["_problem"] = (f"task {task_id}: a rectangle without x, y, width, height or the image's "
                         f"original_width/original_height")
        return
    x, y, bw, bh = found
    a["bbox"] = [x * w / 100, y * h / 100, bw * w / 100, bh * h / 100]
    if abs(float((r.get("value") or {}).get("rotation") or 0)) > 1e-6:
        a["_problem"] = f"task {task_id}: a rotated rectangle (wildtrain boxes are axis-aligned)"


def read(root: Path, ann_file: Path, images: str) -> CocoDataset:
    raw = read_json(ann_file, "Label Studio export")
    if not isinstance(raw, list) or not all(isinstance(t, dict) and isinstance(t.get("data"), dict) for t in raw):
        raise WildtrainError(f"{ann_file}: not a Label Studio JSON export (needs a list of tasks with 'data')")
    base = images_dir(root, images)
    places = list(dict.fromkeys([base, ann_file.parent, root]))
    picked = [(t, reviewed(t)) for t in raw]
    picked = [(t, a) for t, a in picked if a is not None]
    names = [label for _, a in picked for label, _, _ in boxes(a.get("result"))[0] if isinstance(label, str)]
    cats, cat_id = categories_from_names(names)
    out_images, anns, skipped = [], [], 0
    for k, (task, ann) in enumerate(picked, start=1):
        ref = image_ref(task)
        im = {"id": k, "file_name": ref or f"<task {task.get('id')}>", "_path": None,
              "label_studio": {"task": task.get("id"), "annotation": ann.get("id")}}
        if ref is None:
            im["_problem"] = f"task {task.get('id')} names no image in 'data'"
        else:
            path = find_image(ref, places)
            if path is not None:
                im["file_name"], im["_path"] = relative_name(path, base, root), path
        found, other = boxes(ann.get("result"))
        skipped += other
        for label, geometry, r in found:
            a = {"image_id": k, "category_id": cat_id.get(label), "iscrowd": 0}
            shape(a, geometry, r, task.get("id"))
            if a["category_id"] is None and "_problem" not in a:
                kind = "polygon" if r.get("type") == "polygonlabels" else "rectangle"
                a["_problem"] = f"task {task.get('id')}: a {kind} without a label"
            anns.append(a)
        out_images.append(im)
    info = {"label_studio_export": ann_file.name, "tasks": len(raw), "reviewed": len(picked)}
    if skipped:
        info["results_not_read"] = skipped
    ds = CocoDataset(images=out_images, annotations=anns, categories=cats, info=info)
    return ds
