"""YOLO: a dataset yaml with `names` (list or {index: name}) and one `class cx cy w h` txt per image (0..1).

Labels sit beside their image or in the parallel `labels/` tree (images/a/b.jpg -> labels/a/b.txt), as
Ultralytics expects. The yaml's own train/val lists are not used: the pipeline makes its own split.
Category ids are index + 1, so class order survives a round trip.
"""

from __future__ import annotations

from pathlib import Path

from wildtrain.data.coco import CocoDataset
from wildtrain.data.formats.base import flat_name, image_files, images_dir, relative_name
from wildtrain.data.yolo_layout import coco_to_yolo_lines
from wildtrain.errors import WildtrainError
from wildtrain.io import link_or_copy, read_yaml, write_text, write_yaml

NAME = "yolo"


def class_names(yaml_file: Path) -> list[str]:
    raw = read_yaml(yaml_file, "YOLO dataset yaml")
    names = raw.get("names") if isinstance(raw, dict) else None
    if isinstance(names, dict) and all(isinstance(k, int) for k in names):
        if sorted(names) != list(range(len(names))):
            raise WildtrainError(f"{yaml_file}: 'names' keys must be 0..{len(names) - 1}")
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not names:
        raise WildtrainError(f"{yaml_file}: needs 'names' as a non-empty list or {{index: name}} mapping")
    return [str(n) for n in names]


def label_path(image: Path, root: Path) -> Path:
    """images/<...>/x.jpg -> labels/<...>/x.txt when the image sits in an `images` tree, else x.txt beside it."""
    parts = image.relative_to(root).parts
    if "images" in parts[:-1]:
        k = len(parts) - 1 - parts[::-1].index("images")
        return root.joinpath(*parts[:k], "labels", *parts[k + 1:]).with_suffix(".txt")
    return image.with_suffix(".txt")


def parse_line(line: str, n: int, file: str) -> dict:
    values = line.split()
    try:
        if len(values) != 5:
            raise ValueError(f"expected 5 values, got {len(values)}")
        cls = int(values[0])
        box = [float(v) for v in values[1:]]
    except ValueError as e:
        return {"_problem": f"{file} line {n}: {e}"}
    cx, cy, w, h = box
    return {"category_id": cls + 1, "bbox": [cx - w / 2, cy - h / 2, w, h], "_normalized": True, "iscrowd": 0}


def read(root: Path, yaml_file: Path, images: str) -> CocoDataset:
    names = class_names(yaml_file)
    base = images_dir(root, images)
    ds = CocoDataset(images=[], annotations=[], categories=[{"id": i + 1, "name": n} for i, n in enumerate(names)])
    for k, path in enumerate(image_files(root), start=1):
        labels = label_path(path, root)
        im = {"id": k, "file_name": relative_name(path, base, root), "_path": path}
        if not labels.is_file():
            im["_unlisted"] = True
        else:
            rel = relative_name(labels, root, root)
            try:
                lines = labels.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as e:
                im["_problem"] = f"unreadable label file {rel} ({e})"
                lines = []
            for n, line in enumerate(lines, start=1):
                if line.strip():
                    ds.annotations.append({"image_id": k, **parse_line(line, n, rel)})
        ds.images.append(im)
    return ds


def write(ds: CocoDataset, image_root: Path, out: Path) -> Path:
    """out/images/<image>, out/labels/<stem>.txt (empty for negatives), out/dataset.yaml with `names`."""
    texts = coco_to_yolo_lines(ds)
    for im in ds.images:
        flat = flat_name(im["file_name"])
        link_or_copy(image_root / im["file_name"], out / "images" / flat)
        write_text(out / "labels" / Path(flat).with_suffix(".txt"), texts[im["id"]])
    write_yaml(out / "dataset.yaml", {"train": "images", "val": "images", "names": list(ds.class_names)})
    return out / "dataset.yaml"
