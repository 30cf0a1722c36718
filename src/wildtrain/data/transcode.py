"""`wildtrain data convert`: any supported format (folder or archive) -> any other, through validation."""

from __future__ import annotations

import tempfile
from pathlib import Path

from wildtrain.data import formats
from wildtrain.data.sources import open_source
from wildtrain.data.validate import validate
from wildtrain.errors import WildtrainError
from wildtrain.io import replaced_dir


def transcode(src: Path, dst: Path, to: str, fmt: str = "auto", annotations: str = "annotations.json",
              images: str = "images", invalid_boxes: str = "clip", unannotated: str = "skip",
              masks: dict | None = None) -> tuple[str, dict]:
    """Read src, validate it (same rules as prepare), write dst in format `to`; return (source format, report)."""
    if to not in formats.WRITERS:
        raise WildtrainError(f"--to: unknown format '{to}' (known: {', '.join(formats.WRITERS)})")
    if fmt != "auto" and fmt not in formats.FORMATS:
        raise WildtrainError(f"--from: unknown format '{fmt}' (known: auto, {', '.join(formats.FORMATS)})")
    with open_source(src) as folder:
        if fmt == "auto":
            fmt, _ = formats.detect(folder, annotations, masks)
        raw, _ = formats.read(folder, fmt, annotations, images, masks)
        with tempfile.TemporaryDirectory(prefix="wildtrain-transcode-") as stage:
            clean, report = validate(raw, Path(stage) / "images", invalid_boxes, where=str(src),
                                     unannotated=unannotated)
            with replaced_dir(dst) as tmp:
                formats.write(clean, Path(stage) / "images", tmp, to)
    return fmt, report
