"""DVC stage `prepare` (params: data): generate or import the raw dataset and its hashed manifest."""

from wildtrain.pipeline.entry import run
from wildtrain.pipeline.prepare import prepare

if __name__ == "__main__":
    run(prepare)
