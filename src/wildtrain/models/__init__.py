"""Framework adapters, looked up by the `train.framework` name."""

from __future__ import annotations

from wildtrain.errors import WildtrainError
from wildtrain.models.base import DetectorAdapter

FRAMEWORKS = ("yolo",)


def get_adapter(framework: str) -> DetectorAdapter:
    if framework == "yolo":
        from wildtrain.models.yolo import YoloAdapter

        return YoloAdapter()
    raise WildtrainError(f"train.framework: unknown framework '{framework}' (available: {', '.join(FRAMEWORKS)})")
