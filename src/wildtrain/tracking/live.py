"""Per-epoch metrics to both dvclive (for `dvc exp show` / `dvc plots`) and MLflow, behind one call.

Adapters call `EpochLogger.log_epoch` and never import dvclive or mlflow themselves.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path


def clean_metric_name(name: str) -> str:
    """Ultralytics names like 'metrics/mAP50(B)' -> 'metrics/mAP50_B' (MLflow refuses parentheses)."""
    name = re.sub(r"[^0-9A-Za-z_\-./ ]", "_", name)
    return re.sub(r"_+", "_", name).strip("_")


def progress_line(epoch: int, epochs: int, metrics: dict) -> str:
    """One console line per epoch (frameworks run quietly under `dvc repro`)."""
    parts = [f"epoch {epoch + 1}/{epochs}"]
    for key, value in metrics.items():
        name = clean_metric_name(key)
        shown = "loss" in name or "mAP" in name or name.startswith(("val/acc", "val/miou"))
        if isinstance(value, (int, float)) and shown:
            parts.append(f"{name} {float(value):.4g}")
    return "  ".join(parts)


class EpochLogger:
    def __init__(self, live_dir: str | Path, mlflow_run_id: str | None, resume: bool = False):
        from dvclive import Live

        summary = Path(live_dir) / "metrics.json"
        if resume and summary.is_file():
            try:
                json.loads(summary.read_text(encoding="utf-8"))
            except ValueError:  # killed while dvclive rewrote it (in place, not atomic): the next epoch rewrites it
                summary.unlink()
        # dvcyaml=None: our dvc.yaml declares these files; dvclive must not rewrite it or save its own exp.
        self.live = Live(str(live_dir), resume=resume, dvcyaml=None, save_dvc_exp=False, report=None)
        self.run_id = mlflow_run_id
        self._client = None
        if mlflow_run_id:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient()

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        clean = {clean_metric_name(k): float(v) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and math.isfinite(float(v))}
        self.live.step = epoch
        for k, v in clean.items():
            self.live.log_metric(k, v)
        self.live.next_step()
        if self._client is not None and clean:
            import time

            from mlflow.entities import Metric

            ts = int(time.time() * 1000)
            self._client.log_batch(self.run_id, metrics=[Metric(k, v, ts, epoch) for k, v in clean.items()])

    def close(self) -> None:
        self.live.end()
