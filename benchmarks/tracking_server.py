"""Train-stage wall time with MLflow on the team's server (PostgreSQL backend, proxied artifacts) vs the local sqlite
store, in one process, interleaved (sqlite, server, sqlite, server ...), as a ratio (goal <= 1.03).

The same YOLO training on the same data; only MLFLOW_TRACKING_URI differs. The server pair is started in a temporary
folder through wildtrain.services (what `make services` runs) and stopped at the end. Writes
benchmarks/results/tracking_server.json.

    python benchmarks/tracking_server.py --images 48 --epochs 5 --imgsz 160 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, load_line, scratch_project, small_params  # noqa: E402


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--imgsz", type=int, default=160)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still stops the servers (finally below)
    work = scratch_project("wildtrain-bench-server-")
    folder = Path(tempfile.mkdtemp(prefix="wildtrain-bench-services-"))
    from wildtrain import services
    from wildtrain.pipeline.convert import convert
    from wildtrain.pipeline.prepare import prepare
    from wildtrain.pipeline.train import train

    try:
        svc = services.up(folder, free_port(), free_port())
        os.environ.update(svc.client_env())  # the admin's credentials: what is measured is the server, not roles
        p = small_params(work, images=args.images, imgsz=args.imgsz, epochs=args.epochs)
        prepare(p, work)
        convert(p, work)
        uris = {"sqlite": f"sqlite:///{work / 'mlflow.db'}", "server": svc.tracking_uri}

        def run(kind: str) -> float:
            os.environ["MLFLOW_TRACKING_URI"] = uris[kind]
            t = time.perf_counter()
            train(p, work)
            return time.perf_counter() - t

        times: dict[str, list[float]] = {"sqlite": [], "server": []}
        for _ in range(args.repeats):
            for kind in ("sqlite", "server"):
                times[kind].append(run(kind))
        load = load_line()
        result = {"images": args.images, "epochs": args.epochs, "imgsz": args.imgsz, "repeats": args.repeats,
                  "sqlite_s": [round(x, 2) for x in times["sqlite"]],
                  "server_s": [round(x, 2) for x in times["server"]],
                  "ratio_server_over_sqlite_best": round(min(times["server"]) / min(times["sqlite"]), 4),
                  "ratio_server_over_sqlite_median": round(statistics.median(times["server"])
                                                           / statistics.median(times["sqlite"]), 4),
                  "goal": "<= 1.03", "load": load}
    finally:
        services.down(folder)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    out = RESULTS / "tracking_server.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
