"""Framework adapters, looked up by the `train.framework` name."""

from __future__ import annotations

from wildtrain.errors import WildtrainError
from wildtrain.models.base import DetectorAdapter

FRAMEWORKS = ("yolo", "mmdet")


def get_adapter(framework: str) -> DetectorAdapter:
    if framework == "yolo":
        from wildtrain.models.yolo import YoloAdapter

        return YoloAdapter()
    if framework == "mmdet":
        from wildtrain.models.mmdet import MmdetAdapter

        return MmdetAdapter()
    raise WildtrainError(f"train.framework: unknown framework '{framework}' (available: {', '.join(FRAMEWORKS)})")
