"""COCO -> the YOLO layout Ultralytics trains on (images/<split>, labels/<split>, dataset yaml).

Images are hard-linked (copied where links are impossible), never re-encoded. Labels keep 12
significant digits so boxes round-trip to well under 1e-6 px even on 8000 px images.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np

from wildtrain.data.coco import CocoDataset, annotation_arrays
from wildtrain.errors import WildtrainError
from wildtrain.io import link_or_copy, write_text, write_yaml


def yolo_label_texts(dataset: CocoDataset) -> Iterator[tuple[dict, str]]:
    """(image, label-file text) in image order: `class cx cy w h` lines, normalized, class = index in category_ids.

    Vectorized: the boxes are normalized in numpy once and each image's lines come from one %-format call
    (a 200k-box file in ~0.2 s), in the annotations' own order within an image; "" for a negative image.
    """
    images = dataset.images
    if not dataset.annotations:
        yield from ((im, "") for im in images)
        return
    image_ids, category_ids, boxes = annotation_arrays(dataset.annotations)
    ids = np.array([im["id"] for im in images])
    order = np.argsort(ids, kind="stable")
    pos = order[np.searchsorted(ids, image_ids, sorter=order)]  # each annotation's index in `images`
    wh = np.array([(im["width"], im["height"]) for im in images], dtype=np.float64)[pos]
    boxes = boxes.astype(np.float64)
    rows = np.empty((len(boxes), 5))
    rows[:, 0] = np.searchsorted(np.array(dataset.category_ids), category_ids)
    rows[:, 1] = (boxes[:, 0] + boxes[:, 2] / 2) / wh[:, 0]
    rows[:, 2] = (boxes[:, 1] + boxes[:, 3] / 2) / wh[:, 1]
    rows[:, 3] = boxes[:, 2] / wh[:, 0]
    rows[:, 4] = boxes[:, 3] / wh[:, 1]
    flat = rows[np.argsort(pos, kind="stable")].ravel().tolist()  # grouped by image; Python floats format fastest
    line, start = "%d %.12g %.12g %.12g %.12g\n", 0
    for im, count in zip(images, np.bincount(pos, minlength=len(images)).tolist()):
        yield im, (line * count) % tuple(flat[start:start + 5 * count])
        start += 5 * count


def coco_to_yolo_lines(dataset: CocoDataset) -> dict[int, str]:
    """Label-file text per image id (see yolo_label_texts)."""
    return {im["id"]: text for im, text in yolo_label_texts(dataset)}


def yolo_line_to_coco_box(line: str, width: int, height: int) -> tuple[int, list[float]]:
    """Inverse of one label line: (class index, [x, y, w, h] in pixels)."""
    c, cx, cy, w, h = line.split()
    w_px, h_px = float(w) * width, float(h) * height
    return int(c), [float(cx) * width - w_px / 2, float(cy) * height - h_px / 2, w_px, h_px]


def _write_files(jobs: list[tuple[str, bytes]]) -> None:
    for name, data in jobs:
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
        except OSError as e:  # a full disk, a name the file system refuses: one line naming the file
            raise WildtrainError(f"{name}: cannot write label file ({e.strerror})") from None


def write_labels(dataset: CocoDataset, labels_dir: Path, batch: int = 512) -> None:
    """One label file per image (empty for negatives), named like the image with sub-folders folded in.

    Tens of thousands of tiny files: this thread formats the next batch while two writer threads create
    the files (open/write/close release the GIL, so the file system's work runs on the other core).
    """
    labels_dir.mkdir(parents=True, exist_ok=True)
    folder = str(labels_dir)
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending, jobs = [], []
        for im, text in yolo_label_texts(dataset):
            stem = os.path.splitext(im["file_name"].replace("/", "__"))[0]
            jobs.append((f"{folder}/{stem}.txt", text.encode()))
            if len(jobs) == batch:
                pending.append(pool.submit(_write_files, jobs))
                jobs = []
        pending.append(pool.submit(_write_files, jobs))
        for future in pending:
            future.result()


def write_yolo_layout(splits: dict[str, CocoDataset], images_dir: Path, out_dir: Path) -> Path:
    """Write images/<split>, labels/<split> and dataset.yaml under out_dir; return the yaml path."""
    for split, ds in splits.items():
        (out_dir / "images" / split).mkdir(parents=True, exist_ok=True)
        (out_dir / "labels" / split).mkdir(parents=True, exist_ok=True)
        write_labels(ds, out_dir / "labels" / split)
        for im in ds.images:
            link_or_copy(images_dir / im["file_name"], out_dir / "images" / split / im["file_name"].replace("/", "__"))
    any_split = next(iter(splits.values()))
    yaml_path = out_dir / "dataset.yaml"
    # No `path:` key: the trainer passes this file's absolute location, so the layout can move with the repo.
    write_yaml(yaml_path, {
        "train": "images/train", "val": "images/val", "test": "images/test",
        "names": dict(enumerate(any_split.class_names)),
    })
    return yaml_path


def segment_lines(dataset: CocoDataset) -> dict[int, str]:
    """YOLO-seg label text per image id: `class x1 y1 x2 y2 ...` (a polygon, normalized), one line per instance.

    A polygon segmentation gives one line per polygon; an RLE mask is traced to polygons (masks.polygons: within
    1 px of its pixels); an annotation without a mask gives its box as a 4-point polygon; crowd regions are left out
    (Ultralytics has no crowd flag: it would learn them as animals)."""
    from wildtrain.data import masks

    index = {cid: k for k, cid in enumerate(sorted(dataset.category_ids))}
    images = {im["id"]: im for im in dataset.images}
    out = {im["id"]: [] for im in dataset.images}
    for a in dataset.annotations:
        if a.get("iscrowd", 0):
            continue
        im = images[a["image_id"]]
        w, h = im["width"], im["height"]
        if masks.has_mask(a):
            seg = a["segmentation"]
            polys = masks.polygons(masks.decode(seg, h, w)) if masks.is_rle(seg) else seg
        else:
            x, y, bw, bh = a["bbox"]
            polys = [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]]
        for poly in polys:
            pts = np.asarray(poly, np.float64).reshape(-1, 2) / (w, h)
            pts = np.clip(pts, 0, 1)
            out[a["image_id"]].append(f"{index[a['category_id']]} " + " ".join(f"{v:.6g}" for v in pts.ravel()))
    return {i: "".join(line + "\n" for line in lines) for i, lines in out.items()}


def write_segment_layout(splits: dict[str, CocoDataset], images_dir: dict[str, Path], out_dir: Path) -> Path:
    """The YOLO-seg layout (images/<split>, labels/<split> with polygon lines, dataset.yaml) under out_dir: what the
    instance segmenter trains on; the detector's layout (write_yolo_layout) keeps its box lines."""
    for split, ds in splits.items():
        labels = out_dir / "labels" / split
        (out_dir / "images" / split).mkdir(parents=True, exist_ok=True)
        labels.mkdir(parents=True, exist_ok=True)
        texts = segment_lines(ds)
        jobs = []
        for im in ds.images:
            name = im["file_name"].replace("/", "__")
            jobs.append((f"{labels}/{os.path.splitext(name)[0]}.txt", texts[im["id"]].encode()))
            link_or_copy(images_dir[split] / im["file_name"], out_dir / "images" / split / name)
        _write_files(jobs)
    any_split = next(iter(splits.values()))
    yaml_path = out_dir / "dataset.yaml"
    write_yaml(yaml_path, {**{s: f"images/{s}" for s in splits}, "names": dict(enumerate(any_split.class_names))})
    return yaml_path
