"""DVC stages `train`, `train_classifier` (params: the family's section): `python stages/train.py FAMILY`.

The `__main__` guard matters: with DDP, Lightning reruns this script once per extra process.
"""

import sys

from _stage import no_wildtrain

try:
    from wildtrain.pipeline.entry import run
    from wildtrain.pipeline.train import train
except ModuleNotFoundError as e:
    no_wildtrain(e)

if __name__ == "__main__":
    run(train, *sys.argv[1:2])
