"""WebDataset tar shards of a split, for streaming loaders (data larger than RAM, or remote/disk-local copies).

Each sample is `<key>.<image ext>` (the image file's bytes, never re-encoded) plus `<key>.json`
({"image": the COCO image record, "annotations": its boxes}); keys are zero-padded image ids, so
shard order is stable. Tars are written deterministically (sorted, mtime 0, no owner) and atomically.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from wildtrain.data.coco import CocoDataset
from wildtrain.io import atomic_path

SHARD_SIZE = 1000  # samples per shard


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tf.addfile(info, io.BytesIO(data))


def write_shards(ds: CocoDataset, image_root: Path, out_dir: Path, prefix: str,
                 shard_size: int = SHARD_SIZE) -> list[dict]:
    """Write out_dir/<prefix>-000000.tar, ...; return [{file, samples}] per shard."""
    out_dir.mkdir(parents=True, exist_ok=True)
    by_image = ds.annotations_by_image()
    images = sorted(ds.images, key=lambda im: im["id"])
    index = []
    for n, start in enumerate(range(0, len(images), shard_size)):
        chunk = images[start:start + shard_size]
        name = f"{prefix}-{n:06d}.tar"
        with atomic_path(out_dir / name) as tmp:
            with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tf:
                for im in chunk:
                    key = f"{im['id']:08d}"
                    ext = Path(im["file_name"]).suffix.lower().lstrip(".") or "png"
                    _add(tf, f"{key}.{ext}", (image_root / im["file_name"]).read_bytes())
                    meta = {"image": im, "annotations": by_image[im["id"]]}
                    _add(tf, f"{key}.json", json.dumps(meta).encode())
        index.append({"file": name, "samples": len(chunk)})
    return index
