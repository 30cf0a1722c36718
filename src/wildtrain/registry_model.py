"""The MLflow pyfunc flavour of a registered detector, logged as code (no pickled objects).

`mlflow.pyfunc.load_model("models:/wildtrain-detector@champion").predict(pd.DataFrame({"image_path": [...]}))`
returns one dict per image: boxes [x, y, w, h] in pixels, scores and labels. Works for any framework
with an adapter, because it goes through the adapter's predict.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class DetectorModel(PythonModel):
    def load_context(self, context):
        self.meta = json.loads(Path(context.artifacts["meta"]).read_text())
        self.weights = Path(context.artifacts["weights"])

    def predict(self, context, model_input: pd.DataFrame, params=None):
        from wildtrain.models import get_adapter

        paths = list(model_input["image_path"])
        params = params or {}
        dets = get_adapter(self.meta["framework"]).predict(
            self.weights, [Path(p) for p in paths], imgsz=self.meta["imgsz"], conf=float(params.get("conf", 0.25)),
            iou=0.7, max_det=300, batch=8, device=str(params.get("device", "auto")))
        names = self.meta["class_names"]
        return [{"image_path": str(p), "boxes": d.boxes, "scores": d.scores, "labels": [names[c] for c in d.classes]}
                for p, d in zip(paths, dets)]


mlflow.models.set_model(DetectorModel())
