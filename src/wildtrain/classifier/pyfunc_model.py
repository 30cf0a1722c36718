"""The MLflow pyfunc flavour of a registered classifier, logged as code: the ONNX model run by onnxruntime.

Input: a float32 array (N, 3, imgsz, imgsz), crops resized and normalized with the `mean`/`std` in
`model_meta.json`; output: class probabilities (N, classes) in the order of its `class_names`.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel


class ClassifierModel(PythonModel):
    def load_context(self, context):
        import onnxruntime as ort

        self.meta = json.loads(Path(context.artifacts["meta"]).read_text())
        self.session = ort.InferenceSession(context.artifacts["weights"], providers=["CPUExecutionProvider"])

    def predict(self, context, model_input, params=None):
        logits = self.session.run(None, {"images": np.asarray(model_input, dtype=np.float32)})[0]
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


mlflow.models.set_model(ClassifierModel())
