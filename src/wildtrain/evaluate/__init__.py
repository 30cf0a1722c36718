"""Evaluation that does not depend on the framework: detections scored by pycocotools, crops by torchmetrics."""

from __future__ import annotations

import hashlib
import json


def evaluation_hash(scored: dict, settings: dict) -> str:
    """Identifies what a score means: the scored annotations and images (their hashes), the evaluator's settings.
    Two models' scores compare only when this is equal (the registry's gate)."""
    return hashlib.sha256(json.dumps([scored, settings], sort_keys=True).encode()).hexdigest()
