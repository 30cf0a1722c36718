"""DVC stage `prepare` (params: data): read and validate the source, write the raw dataset and its manifest."""

from _stage import no_wildtrain

try:
    from wildtrain.pipeline.entry import run
    from wildtrain.pipeline.prepare import prepare
except ModuleNotFoundError as e:
    no_wildtrain(e)

if __name__ == "__main__":
    run(prepare)
