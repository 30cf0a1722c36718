"""DVC stages `register`, `register_classifier`, `register_two_stage`: `python stages/register.py FAMILY`."""

import sys

from _stage import no_wildtrain

try:
    from wildtrain.pipeline.entry import run
    from wildtrain.pipeline.register import register
except ModuleNotFoundError as e:
    no_wildtrain(e)

if __name__ == "__main__":
    run(register, *sys.argv[1:2])
