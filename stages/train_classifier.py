"""DVC stage `train_classifier` (params: classifier): Lightning classifier on the ROI crops.

The `__main__` guard matters: with `strategy: ddp`, Lightning reruns this script once per extra process.
"""

from wildtrain.pipeline.entry import run
from wildtrain.pipeline.train_classifier import train_classifier

if __name__ == "__main__":
    run(train_classifier)
