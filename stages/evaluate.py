"""DVC stages `evaluate`, `evaluate_classifier`, `evaluate_two_stage`: `python stages/evaluate.py FAMILY`."""

import sys

from _stage import no_wildtrain

try:
    from wildtrain.pipeline.entry import run
    from wildtrain.pipeline.evaluate import evaluate
except ModuleNotFoundError as e:
    no_wildtrain(e)

if __name__ == "__main__":
    run(evaluate, *sys.argv[1:2])
