"""DVC stage `register_classifier` (params: classifier_register): ONNX/TorchScript export + MLflow registry."""

from wildtrain.pipeline.entry import run
from wildtrain.pipeline.register_classifier import register_classifier

if __name__ == "__main__":
    run(register_classifier)
