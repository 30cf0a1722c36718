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
        root: Path | None = None, tags: dict[str, str] | None = None) -> Iterator[object]:
    """Open a new run, or reopen `run_id` (train resumes, register adds to the training run).

    `tags` go on a new run; `mlflow.parentRunId` among them nests it (tune trials under their study).
    """
    mlflow = connect(experiment, root)
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name, tags=tags) as active:
        yield active
