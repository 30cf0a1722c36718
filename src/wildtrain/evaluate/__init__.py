"""Evaluation that does not depend on the framework: detections scored by pycocotools, crops by torchmetrics."""

from __future__ import annotations

import hashlib
import json


def evaluation_hash(scored: dict, settings: dict) -> str:
    """Identifies what a score means: the scored annotations and images (their hashes), the evaluator's settings.
    Two models' scores compare only when this is equal (the registry's gate).

    The bootstrap settings (resamples, seed) are deliberately not part of it: they change the reported intervals,
    not the scores or the per-unit tables, and the gate's paired test resamples both models' tables afresh with
    the current settings, so a champion evaluated under other bootstrap settings still compares without being
    re-evaluated. The counting confidence (predict.conf) is part of the detector's: it changes the count metrics."""
    return hashlib.sha256(json.dumps([scored, settings], sort_keys=True).encode()).hexdigest()
