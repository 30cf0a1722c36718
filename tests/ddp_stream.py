"""`wildtrain train classifier` with data.stream, recording which shards each DDP process read (to
$SHARD_LOG/rank<LOCAL_RANK>.json) so a test can check the ranks read disjoint shards and as many batches. Only
the shard reader is wrapped; the loader, the sharding and the training are the real ones."""

import json
import os
import sys
from pathlib import Path

import lightning.pytorch as pl

from wildtrain.data import stream

original = stream.shard_samples
read: list[str] = []
batches = [0]


def recording(path, expected):
    read.append(Path(path).name)
    yield from original(path, expected)


stream.shard_samples = recording
original_step = pl.LightningModule.optimizer_step


def counting_step(self, *args, **kwargs):
    batches[0] += 1
    rank = os.environ.get("LOCAL_RANK", "0")
    Path(os.environ["SHARD_LOG"], f"rank{rank}.json").write_text(json.dumps({"shards": read, "steps": batches[0]}))
    return original_step(self, *args, **kwargs)


pl.LightningModule.optimizer_step = counting_step

if __name__ == "__main__":
    from wildtrain.cli import app

    app(args=sys.argv[1:], prog_name="wildtrain")  # sys.argv kept: Lightning starts rank 1 with this script
