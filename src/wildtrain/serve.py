"""The MLflow pyfunc model of every registered wildtrain model, logged as code (no pickled objects).

The registered model carries its model folder (artifact `model`) and the wildtrain package (`code_paths`), so it
loads where this repository is not installed. Weights are loaded once per process (load_context), whatever the
family. Input: a DataFrame with an `image` column (encoded image bytes; base64 in JSON requests) or an
`image_path` column (a file on the serving machine). Predict-time options (thresholds, slicing) are params of
the signature. A bad row is a 400 with one line naming the row and the problem; the server keeps serving.

Served (`mlflow models serve`), the model reads no file of the server unless its operator names the folders it may
read in WILDTRAIN_SERVE_PATHS: `image_path` is off by default, and a path that resolves outside those folders is
refused with the same answer whether the file exists or not (no existence oracle). Loaded in the caller's own
process (`mlflow.pyfunc.load_model`), it reads the caller's files. Nothing is pip-installed at run time
(env.forbid_runtime_installs).

    model = mlflow.pyfunc.load_model("models:/wildtrain-two-stage@champion")
    model.predict(pd.DataFrame({"image": [open("IMG_0001.JPG", "rb").read()]}), params={"conf": 0.3})
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel

from wildtrain.env import forbid_runtime_installs

forbid_runtime_installs()  # before the model's family imports Ultralytics: this module loads first when served

MAX_PIXELS_ENV = "WILDTRAIN_MAX_PIXELS"  # the largest image a served model decodes (default DEFAULT_MAX_PIXELS)
DEFAULT_MAX_PIXELS = 100_000_000
DEVICE_ENV = "WILDTRAIN_DEVICE"  # auto | cpu | cuda:N
SERVE_PATHS_ENV = "WILDTRAIN_SERVE_PATHS"  # folders (':'-separated) whose files a served model may read by image_path


def bad_request(message: str):
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def decode(data, where: str, max_pixels: int) -> np.ndarray:
    """Encoded image bytes -> an RGB array as displayed; anything else is one clear line (a 400 when served)."""
    from mlflow.exceptions import MlflowException
    from PIL import Image, UnidentifiedImageError

    from wildtrain.data.images import displayed_rgb

    if isinstance(data, str):  # base64 text, when the caller's JSON was not decoded by the signature
        import base64
        import binascii

        try:
            data = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise bad_request(f"{where}: not base64-encoded image bytes") from None
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise bad_request(f"{where}: empty or not image bytes ({type(data).__name__})")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > max_pixels:
                raise bad_request(f"{where}: image of {img.width}x{img.height} px is over the limit of {max_pixels:,} "
                                  f"pixels ({MAX_PIXELS_ENV})")
            img.load()
            return np.asarray(displayed_rgb(img)[0])
    except MlflowException:
        raise
    except (UnidentifiedImageError, ImportError):  # ImportError: Ultralytics' HEIF fallback without pi-heif
        raise bad_request(f"{where}: not a readable image (not a format this server decodes)") from None
    except Exception as e:  # noqa: BLE001 — a decoder's failure on untrusted bytes is the caller's 400, never a 500
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise bad_request(f"{where}: not a readable image ({reason})") from None


def served() -> bool:
    """Whether this process is MLflow's scoring server (it sets this variable before it loads the model)."""
    from mlflow.environment_variables import _MLFLOW_IS_IN_SERVING_ENVIRONMENT

    return bool(_MLFLOW_IS_IN_SERVING_ENVIRONMENT.get())


def allowed_roots() -> list[Path] | None:
    """The folders image_path may read from: WILDTRAIN_SERVE_PATHS, else none when served, else anywhere (None)."""
    roots = [Path(r).expanduser().resolve() for r in os.environ.get(SERVE_PATHS_ENV, "").split(os.pathsep) if r.strip()]
    if roots:
        return roots
    return [] if served() else None


def read_path(path: str, where: str, roots: list[Path] | None) -> bytes:
    """The bytes of an image_path; outside the allowed roots, one answer that says nothing about the file."""
    target = Path(path)
    if roots is not None:
        if not roots:
            raise bad_request(f"{where}: image_path is off on this server; send the image bytes in the 'image' "
                              f"column (base64 in JSON)")
        try:
            target = target.resolve()  # symlinks and '..' followed first, then checked
        except (OSError, ValueError, RuntimeError):  # a NUL byte, a symlink loop: as if outside, nothing told
            target = None
        if target is None or not any(target.is_relative_to(root) for root in roots):
            raise bad_request(f"{where}: image_path is outside the folders this server may read ({SERVE_PATHS_ENV})")
    try:
        if not target.is_file():  # a folder, FIFO or device would hang or mislead the decoder
            raise bad_request(f"{where}: not a file")
        return target.read_bytes()
    except (OSError, ValueError) as e:
        raise bad_request(f"{where}: {getattr(e, 'strerror', None) or e}") from None


def read_rows(model_input, max_pixels: int) -> list[np.ndarray]:
    import pandas as pd

    frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
    columns = [c for c in ("image", "image_path") if c in frame.columns]
    if not columns:
        raise bad_request(f"input needs an 'image' column (image bytes, base64 in JSON) or an 'image_path' column; "
                          f"got {', '.join(map(str, frame.columns)) or 'none'}")
    images, roots = [], allowed_roots()
    for i, row in enumerate(frame[columns].itertuples(index=False)):
        values = dict(zip(columns, row))
        data, path = values.get("image"), values.get("image_path")
        if data is not None and not (isinstance(data, float) and np.isnan(data)):
            images.append(decode(data, f"row {i}: image", max_pixels))
        elif isinstance(path, str) and path:
            where = f"row {i}: image_path '{path}'"
            images.append(decode(read_path(path, where, roots), where, max_pixels))
        else:
            raise bad_request(f"row {i}: neither 'image' nor 'image_path' is given")
    return images


def as_rows(card, predictions: list) -> list[dict]:
    """Predictions as JSON-ready dicts: boxes [x, y, w, h] with labels and scores, class probabilities, or a class
    map (a base64 palette PNG whose pixel values are class indices) with each class's area in pixels — as the
    model's task (wildtrain.tasks) writes a row."""
    from wildtrain.tasks import task_of

    row = task_of(card).row
    return [row(card.class_names, pred) for pred in predictions]


class WildtrainModel(PythonModel):
    def load_context(self, context):
        from wildtrain import families

        self.predictor = families.load(Path(context.artifacts["model"]), os.environ.get(DEVICE_ENV, "auto"))
        self.max_pixels = int(os.environ.get(MAX_PIXELS_ENV, DEFAULT_MAX_PIXELS))

    def predict(self, context, model_input, params=None):
        from wildtrain.errors import WildtrainError

        images = read_rows(model_input, self.max_pixels)
        known = self.predictor.options()
        options = {k: v for k, v in (params or {}).items() if k in known}
        try:
            return as_rows(self.predictor.card, self.predictor.predict(images, **options))
        except WildtrainError as e:  # an option out of range, e.g. slice=7
            raise bad_request(str(e)) from None


mlflow.models.set_model(WildtrainModel())
