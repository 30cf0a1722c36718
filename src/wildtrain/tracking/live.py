"""Per-epoch metrics to both dvclive (for `dvc exp show` / `dvc plots`) and MLflow, behind one call.

Adapters call `EpochLogger.log_epoch` and never import dvclive or mlflow themselves. MLflow gets them from a
background thread (`MetricSender`): an epoch never waits for a remote tracking server, and a server that goes away
for a while loses nothing (batches are kept and sent again, in order, once it answers).
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from pathlib import Path

from wildtrain.errors import WildtrainError

FLUSH_TIMEOUT = "WILDTRAIN_MLFLOW_FLUSH_TIMEOUT"  # seconds the end of a training waits for unsent metrics (300)
MAX_BATCH = 1000  # MLflow's log_batch limit on metrics per call


def clean_metric_name(name: str) -> str:
    """Ultralytics names like 'metrics/mAP50(B)' -> 'metrics/mAP50_B' (MLflow refuses parentheses)."""
    name = re.sub(r"[^0-9A-Za-z_\-./ ]", "_", name)
    return re.sub(r"_+", "_", name).strip("_")


def progress_line(epoch: int, epochs: int, metrics: dict, phases: list[int] | None = None) -> str:
    """One console line per epoch (frameworks run quietly under `dvc repro`).

    `phases`: the epochs of each phase of a training in phases, whose epochs are numbered on across phases:
    "phase 2/2 epoch 3/10" for the 13th epoch of phases of 10 and 10."""
    parts = [f"epoch {epoch + 1}/{epochs}"]
    if phases:
        k, start = 0, 0
        while k < len(phases) - 1 and epoch >= start + phases[k]:
            start += phases[k]
            k += 1
        parts = [f"phase {k + 1}/{len(phases)} epoch {epoch - start + 1}/{phases[k]}"]
    for key, value in metrics.items():
        name = clean_metric_name(key)
        shown = "loss" in name or "mAP" in name or name.startswith(("val/acc", "val/miou"))
        if isinstance(value, (int, float)) and shown:
            parts.append(f"{name} {float(value):.4g}")
    return "  ".join(parts)


class MetricSender:
    """Sends metrics to one MLflow run from a background thread, retrying while the server does not answer."""

    def __init__(self, run_id: str):
        from mlflow.tracking import MlflowClient

        self.run_id, self.client = run_id, MlflowClient()
        self.pending: list = []
        self.error: str | None = None  # the last failure, while metrics wait
        self._lock, self._wake, self._closing = threading.Lock(), threading.Event(), False
        self._thread = threading.Thread(target=self._loop, name="wildtrain-mlflow-metrics", daemon=True)
        self._thread.start()

    def put(self, metrics: list) -> None:
        with self._lock:
            self.pending.extend(metrics)
        self._wake.set()

    def _loop(self) -> None:
        delay = 1.0
        while True:
            self._wake.wait(timeout=delay)
            self._wake.clear()
            with self._lock:
                batch = self.pending[:MAX_BATCH]
            if not batch:
                if self._closing:
                    return
                continue
            try:
                self.client.log_batch(self.run_id, metrics=batch)
            except Exception as e:  # noqa: BLE001 — server away, timeouts, 5xx: keep them and try again
                self.error = " ".join(str(e).split())[:200] or type(e).__name__
                delay = min(delay * 2, 30.0)
                continue
            with self._lock:
                del self.pending[:len(batch)]
                more = bool(self.pending)
            self.error, delay = None, 1.0
            if more:
                self._wake.set()

    def close(self, timeout: float) -> int:
        """Wait up to `timeout` s for everything to be sent; returns how many metrics were not."""
        self._closing = True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self.pending:
                    break
            self._wake.set()
            time.sleep(0.1)
        with self._lock:
            return len(self.pending)


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
        self._sender = MetricSender(mlflow_run_id) if mlflow_run_id else None

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        clean = {clean_metric_name(k): float(v) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and math.isfinite(float(v))}
        self.live.step = epoch
        for k, v in clean.items():
            self.live.log_metric(k, v)
        self.live.next_step()
        if self._sender is not None and clean:
            from mlflow.entities import Metric

            ts = int(time.time() * 1000)
            self._sender.put([Metric(k, v, ts, epoch) for k, v in clean.items()])

    def close(self, check: bool = True) -> None:
        """End dvclive; wait for MLflow to have every epoch (a server still away: one line, the run is resumable).

        `check=False` when the training already failed: that error is the one to report."""
        self.live.end()
        if self._sender is None:
            return
        unsent = self._sender.close(float(os.environ.get(FLUSH_TIMEOUT) or 300) if check else 5.0)
        if unsent and check:
            from wildtrain.env import tracking_uri

            raise WildtrainError(f"MLflow: {unsent} per-epoch metric values of run {self.run_id} could not reach "
                                 f"{tracking_uri()} ({self._sender.error}); the training's checkpoints are kept: "
                                 f"rerun the stage once the server answers")
