"""Offline, project-local settings for the tools we drive, applied before they are imported.

Without these, Ultralytics probes DNS, checks PyPI and fetches a font from GitHub, MLflow and DVC send
telemetry, and albumentations asks PyPI for its version (see README "Offline"). Ultralytics' settings
live in a project-local folder so the user's global settings are never touched.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

OFFLINE_ENV = {
    "YOLO_OFFLINE": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
    "NO_ALBUMENTATIONS_UPDATE": "1",
    "YOLO_VERBOSE": "False",
}


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The nearest folder holding dvc.yaml (the pipeline's root), else the current folder."""
    here = Path(start or os.getcwd()).resolve()
    for p in (here, *here.parents):
        if (p / "dvc.yaml").is_file():
            return p
    return here


def configure(root: Path | None = None) -> Path:
    """Set offline switches (without overriding what the user set) and a project-local Ultralytics dir."""
    root = root or project_root()
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    config_dir = Path(os.environ.setdefault("YOLO_CONFIG_DIR", str(root / ".ultralytics")))
    font_dir = config_dir / "Ultralytics"
    font = font_dir / "Arial.ttf"
    if not font.exists():
        # Ultralytics' check_font downloads Arial.ttf from GitHub; any TTF will do for its plots.
        import matplotlib

        src = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        font_dir.mkdir(parents=True, exist_ok=True)
        if src.exists():
            shutil.copyfile(src, font)
    return root


def configure_ultralytics() -> None:
    """Turn off Ultralytics' own MLflow/dvclive/W&B callbacks (we log explicitly) in the project-local settings."""
    from ultralytics.utils import SETTINGS

    off = ("mlflow", "dvc", "wandb", "clearml", "comet", "raytune", "tensorboard", "sync")
    wanted = {k: False for k in off if k in SETTINGS}
    if any(SETTINGS.get(k) != v for k, v in wanted.items()):
        SETTINGS.update(wanted)


def tracking_uri(root: Path | None = None) -> str:
    """MLFLOW_TRACKING_URI if set (any server or store), else a sqlite store in the project root."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    root = root or project_root()
    return f"sqlite:///{root / 'mlflow.db'}"
