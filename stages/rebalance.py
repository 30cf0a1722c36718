"""DVC stage `rebalance_crops`: `python stages/rebalance.py`."""

from _stage import no_wildtrain

try:
    from wildtrain.pipeline.entry import run
    from wildtrain.pipeline.rebalance import rebalance
except ModuleNotFoundError as e:
    no_wildtrain(e)

if __name__ == "__main__":
    run(rebalance)
