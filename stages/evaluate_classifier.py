"""DVC stage `evaluate_classifier` (params: classifier_evaluate): torchmetrics on the test crops."""

from wildtrain.pipeline.entry import run
from wildtrain.pipeline.evaluate_classifier import evaluate_classifier

if __name__ == "__main__":
    run(evaluate_classifier)
