"""DVC stage `convert` (params: convert): split, write canonical COCO per split, the YOLO layout and ROI crops."""

from _stage import no_wildtrain

try:
    from wildtrain.pipeline.convert import convert
    from wildtrain.pipeline.entry import run
except ModuleNotFoundError as e:
    no_wildtrain(e)

if __name__ == "__main__":
    run(convert)
