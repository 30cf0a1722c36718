"""COCO -> the YOLO layout Ultralytics trains on (images/<split>, labels/<split>, dataset yaml).

Images are hard-linked (copied where links are impossible), never re-encoded. Labels keep 12
significant digits so boxes round-trip to well under 1e-6 px even on 8000 px images.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from wildtrain.data.coco import CocoDataset
from wildtrain.io import link_or_copy, write_text, write_yaml


def coco_to_yolo_lines(dataset: CocoDataset) -> dict[int, str]:
    """Label-file text per image id: `class cx cy w h`, normalized, class = index in category_ids."""
    index = {cid: i for i, cid in enumerate(dataset.category_ids)}
    size = {im["id"]: (im["width"], im["height"]) for im in dataset.images}
    texts: dict[int, list[str]] = {im["id"]: [] for im in dataset.images}
    if dataset.annotations:
        boxes = np.array([a["bbox"] for a in dataset.annotations], dtype=np.float64)
        wh = np.array([size[a["image_id"]] for a in dataset.annotations], dtype=np.float64)
        norm = np.empty_like(boxes)
        norm[:, 0] = (boxes[:, 0] + boxes[:, 2] / 2) / wh[:, 0]
        norm[:, 1] = (boxes[:, 1] + boxes[:, 3] / 2) / wh[:, 1]
        norm[:, 2] = boxes[:, 2] / wh[:, 0]
        norm[:, 3] = boxes[:, 3] / wh[:, 1]
        for a, (cx, cy, w, h) in zip(dataset.annotations, norm.tolist()):  # Python floats format faster
            texts[a["image_id"]].append(f"{index[a['category_id']]} {cx:.12g} {cy:.12g} {w:.12g} {h:.12g}")
    return {k: "".join(line + "\n" for line in v) for k, v in texts.items()}


def yolo_line_to_coco_box(line: str, width: int, height: int) -> tuple[int, list[float]]:
    """Inverse of one label line: (class index, [x, y, w, h] in pixels)."""
    c, cx, cy, w, h = line.split()
    w_px, h_px = float(w) * width, float(h) * height
    return int(c), [float(cx) * width - w_px / 2, float(cy) * height - h_px / 2, w_px, h_px]


def _write_file(job: tuple[str, bytes]) -> None:
    fd = os.open(job[0], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(job[1])
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def write_labels(dataset: CocoDataset, labels_dir: Path) -> None:
    """One label file per image (empty for negatives), named like the image with sub-folders folded in.

    Tens of thousands of tiny files: raw os.write from a few threads (the syscalls release the GIL).
    """
    labels_dir.mkdir(parents=True, exist_ok=True)
    texts = coco_to_yolo_lines(dataset)
    jobs = [(str(labels_dir / Path(im["file_name"].replace("/", "__")).with_suffix(".txt")), texts[im["id"]].encode())
            for im in dataset.images]
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(_write_file, jobs, chunksize=256))


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
