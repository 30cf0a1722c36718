"""WebDataset tar shards of a split, for streaming loaders (data larger than RAM, or remote/disk-local copies).

Each sample is `<key>.<image ext>` (the image file's bytes, never re-encoded) plus `<key>.json`
({"image": the COCO image record, "annotations": its boxes}); keys are zero-padded image ids, so
shard order is stable. The classifier's crops get shards of their own (write_crop_shards: `<n>.<ext>` + `<n>.json`
with the class name). Tars are written deterministically (sorted, mtime 0, no owner) and atomically.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from wildtrain.data.coco import CocoDataset
from wildtrain.io import atomic_path

SHARD_SIZE = 1000  # samples per shard
INDEX = "index.json"  # beside the tars: {"shards": [{"file", "samples"}], ...} (wildtrain.data.stream reads it)
CROP_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")  # as the classifier reads crops


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tf.addfile(info, io.BytesIO(data))


def _write(samples: list[tuple[str, Path, dict]], out_dir: Path, prefix: str, shard_size: int) -> list[dict]:
    """samples: (key, image file, json meta) in shard order -> out_dir/<prefix>-000000.tar, ...; [{file, samples}]."""
    out_dir.mkdir(parents=True, exist_ok=True)
    index = []
    for n, start in enumerate(range(0, len(samples), shard_size)):
        chunk = samples[start:start + shard_size]
        name = f"{prefix}-{n:06d}.tar"
        with atomic_path(out_dir / name) as tmp:
            with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tf:
                for key, image, meta in chunk:
                    ext = image.suffix.lower().lstrip(".") or "png"
                    _add(tf, f"{key}.{ext}", image.read_bytes())
                    _add(tf, f"{key}.json", json.dumps(meta).encode())
        index.append({"file": name, "samples": len(chunk)})
    return index


def write_shards(ds: CocoDataset, image_root: Path, out_dir: Path, prefix: str,
                 shard_size: int = SHARD_SIZE) -> list[dict]:
    """Write out_dir/<prefix>-000000.tar, ...; return [{file, samples}] per shard."""
    by_image = ds.annotations_by_image()
    return _write([(f"{im['id']:08d}", image_root / im["file_name"], {"image": im, "annotations": by_image[im["id"]]})
                   for im in sorted(ds.images, key=lambda im: im["id"])], out_dir, prefix, shard_size)


def write_crop_shards(split_dir: Path, out_dir: Path, prefix: str, shard_size: int = SHARD_SIZE) -> dict:
    """The ROI crops of one split (`<class>/<file>`) as shards of `<n>.<ext>` + `<n>.json` ({"class", "file"}),
    for the classifier's streaming loader; returns the index (classes, crops per class, shards)."""
    files = sorted(f for f in split_dir.glob("*/*") if f.is_file() and f.suffix.lower() in CROP_SUFFIXES)
    samples = [(f"{n:08d}", f, {"class": f.parent.name, "file": f.relative_to(split_dir).as_posix()})
               for n, f in enumerate(files)]
    classes = sorted({f.parent.name for f in files})
    return {"split": split_dir.name, "classes": classes,
            "counts": {c: sum(1 for f in files if f.parent.name == c) for c in classes},
            "shards": _write(samples, out_dir, prefix, shard_size)}
