"""`wildtrain train classifier` as a node of a multi-node run, recording which samples each rank's DistributedSampler
handed out (to $SHARD_LOG/rank<RANK>.json) so a test can check the ranks saw disjoint shards. Nothing else changes:
the sampler's own iterator is wrapped, not replaced."""

import json
import os
import sys
from pathlib import Path

import torch.utils.data

original = torch.utils.data.DistributedSampler.__iter__
seen: list[dict] = []


def recording_iter(self):
    indices = list(original(self))
    rank = os.environ.get("RANK") or os.environ.get("SLURM_PROCID", "0")
    seen.append({"dataset": len(self.dataset), "epoch": self.epoch, "indices": indices, "shuffle": self.shuffle})
    Path(os.environ["SHARD_LOG"], f"rank{rank}.json").write_text(json.dumps(seen))
    return iter(indices)


torch.utils.data.DistributedSampler.__iter__ = recording_iter

if __name__ == "__main__":
    from wildtrain.cli import app

    sys.argv = ["wildtrain", *sys.argv[1:]]
    app()
