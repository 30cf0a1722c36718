"""DVC stage `convert` (params: convert): split, write canonical COCO per split and the YOLO layout."""

from wildtrain.pipeline.convert import convert
from wildtrain.pipeline.entry import run

if __name__ == "__main__":
    run(convert)
