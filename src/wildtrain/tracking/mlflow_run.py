"""The MLflow side: tracking URI, experiment, and opening (or reopening) the run a model belongs to."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from wildtrain.env import tracking_uri


def connect(experiment: str, root: Path | None = None):
    """Point MLflow at MLFLOW_TRACKING_URI or the project's sqlite store; return the module."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(root))
    mlflow.set_experiment(experiment)
    return mlflow


@contextlib.contextmanager
def run(experiment: str, run_id: str | None = None, run_name: str | None = None,
        root: Path | None = None) -> Iterator[object]:
    """Open a new run, or reopen `run_id` (train resumes, register adds to the training run)."""
    mlflow = connect(experiment, root)
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name) as active:
        yield active
