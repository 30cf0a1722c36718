"""The MLflow pyfunc model of every registered wildtrain model, logged as code (no pickled objects).

The registered model carries its model folder (artifact `model`) and the wildtrain package (`code_paths`), so it
loads where this repository is not installed. Weights are loaded once per process (load_context), whatever the
family. Input: a DataFrame with an `image` column (encoded image bytes; base64 in JSON requests) or an
`image_path` column (a file on the serving machine). Predict-time options (thresholds, slicing) are params of
the signature. A bad row is a 400 with one line naming the row and the problem; the server keeps serving.

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

MAX_PIXELS_ENV = "WILDTRAIN_MAX_PIXELS"  # the largest image a served model decodes (default DEFAULT_MAX_PIXELS)
DEFAULT_MAX_PIXELS = 100_000_000
DEVICE_ENV = "WILDTRAIN_DEVICE"  # auto | cpu | cuda:N


def bad_request(message: str):
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def decode(data, where: str, max_pixels: int) -> np.ndarray:
    """Encoded image bytes -> an RGB array as displayed; anything else is one clear line (a 400 when served)."""
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
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise bad_request(f"{where}: not a readable image ({reason})") from None


def read_rows(model_input, max_pixels: int) -> list[np.ndarray]:
    import pandas as pd

    frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
    columns = [c for c in ("image", "image_path") if c in frame.columns]
    if not columns:
        raise bad_request(f"input needs an 'image' column (image bytes, base64 in JSON) or an 'image_path' column; "
                          f"got {', '.join(map(str, frame.columns)) or 'none'}")
    images = []
    for i, row in enumerate(frame[columns].itertuples(index=False)):
        values = dict(zip(columns, row))
        data, path = values.get("image"), values.get("image_path")
        if data is not None and not (isinstance(data, float) and np.isnan(data)):
            images.append(decode(data, f"row {i}: image", max_pixels))
        elif isinstance(path, str) and path:
            try:
                raw = Path(path).read_bytes()
            except OSError as e:
                raise bad_request(f"row {i}: image_path '{path}': {e.strerror or e}") from None
            images.append(decode(raw, f"row {i}: image_path '{path}'", max_pixels))
        else:
            raise bad_request(f"row {i}: neither 'image' nor 'image_path' is given")
    return images


def as_rows(card, predictions: list) -> list[dict]:
    """Predictions as JSON-ready dicts: boxes [x, y, w, h] with labels and scores, class probabilities, or a class
    map (a base64 palette PNG whose pixel values are class indices) with each class's area in pixels."""
    import base64

    names = card.class_names
    rows = []
    for pred in predictions:
        if hasattr(pred, "mask"):
            areas = pred.areas(len(names))
            total = max(1, sum(areas))
            rows.append({"mask_png": base64.b64encode(pred.png()).decode("ascii"), "height": int(pred.mask.shape[0]),
                         "width": int(pred.mask.shape[1]), "classes": list(names),
                         "areas": dict(zip(names, areas)), "fractions": {n: round(a / total, 6) for n, a in zip(names, areas)}})
        elif hasattr(pred, "boxes"):
            labels = [names[c] for c in pred.classes]
            rows.append({"boxes": [[round(v, 2) for v in b] for b in pred.boxes],
                         "scores": [round(s, 5) for s in pred.scores], "labels": labels,
                         "counts": {n: labels.count(n) for n in sorted(set(labels))}})
        else:
            rows.append({"label": names[pred.label], "score": round(pred.scores[pred.label], 5),
                         "scores": {n: round(s, 5) for n, s in zip(names, pred.scores)}})
    return rows


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
