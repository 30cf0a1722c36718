"""DVC stage `evaluate` (params: evaluate): COCO detections on the test split, scored by pycocotools."""

from wildtrain.pipeline.entry import run
from wildtrain.pipeline.evaluate import evaluate

if __name__ == "__main__":
    run(evaluate)
