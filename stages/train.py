"""DVC stage `train` (params: train): fit the detector; per-epoch metrics to dvclive and MLflow."""

from wildtrain.pipeline.entry import run
from wildtrain.pipeline.train import train

if __name__ == "__main__":
    run(train)
