"""Test metrics of the classifier and the segmenter trained from files vs from shards (data.stream) at equal seeds,
with the project's params, on a copy of a project's prepared data (data/raw; convert is rerun here with
data.stream so it writes the shards). Prints and writes benchmarks/results/streaming_metrics.json.

The two runs see the same samples with the same decoding and transforms but in a different order (a shuffle
buffer over shards, not a full permutation), so equal figures are not expected; the question is whether the
difference stays inside the evaluation's 95% intervals (docs/explanation/streaming.md).

    nice python benchmarks/streaming_metrics.py --data /path/to/project/data --families classifier segmenter
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save_result, scratch_project  # noqa: E402

KEYS = {"classifier": ("f1_macro", "accuracy"), "segmenter": ("miou", "dice_macro")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="a project's data/ folder with raw/ (prepare's output)")
    ap.add_argument("--families", nargs="+", default=["classifier", "segmenter"], choices=sorted(KEYS))
    args = ap.parse_args()
    data = args.data.resolve()

    from wildtrain import params
    from wildtrain.pipeline.convert import convert
    from wildtrain.pipeline.evaluate import evaluate
    from wildtrain.pipeline.train import train

    root = scratch_project("wildtrain-bench-stream-metrics-")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    try:
        shutil.copytree(data / "raw", root / "data/raw")
        base = params.load(root / "params.yaml")
        convert(dataclasses.replace(base, data=dataclasses.replace(base.data, stream=True)), root)
        result = {}
        for family in args.families:
            for stream in (False, True):
                p = dataclasses.replace(base, data=dataclasses.replace(base.data, stream=stream),
                                        classifier=dataclasses.replace(base.classifier, resume="never"),
                                        segmenter=dataclasses.replace(base.segmenter, resume="never"))
                card = train(p, root, family)
                ev = evaluate(p, root, family)
                row = {"epochs": card["training"]["epochs_completed"], "tensors": card["hashes"]["tensors_sha256"][:8],
                       **{k: round(ev[k], 4) for k in KEYS[family]},
                       **{f"{k}_ci95": [round(v, 4) for v in ev[f"{k}_ci95"]] for k in KEYS[family]}}
                result[f"{family}_{'stream' if stream else 'file'}"] = row
                print(family, "stream" if stream else "file", json.dumps(row), flush=True)
    finally:
        os.chdir(Path(__file__).resolve().parents[1])
        shutil.rmtree(root, ignore_errors=True)
    save_result("streaming_metrics", result)


if __name__ == "__main__":
    main()
