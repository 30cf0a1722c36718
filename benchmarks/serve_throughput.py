"""Served model throughput: a real `mlflow models serve` process answering base64 JPEG requests vs a plain loop
over `YOLO.predict` on the same image in one process, same weights.

The model folder (YOLO11n fine-tuned at 640 px from the 320 px one of sliced_vs_sahi.py by the pipeline's train
stage, cached in benchmarks/results/) is logged the way wildtrain.registry does it (serve.py as code, the folder
as artifact `model`, the wildtrain package in code_paths, the register stage's signature and pinned
requirements) into a throw-away sqlite store, registered, and served as `models:/NAME/1` with
`--env-manager local` on 127.0.0.1. Each request is
`{"dataframe_records": [{"image": <base64 JPEG>}]}` (the JSON is built once; the client's cost is one POST).
The plain loop calls `YOLO.predict(path)` (it decodes the JPEG each time, as the server decodes each body) with
the same conf/iou/max_det and the model's own imgsz.

Contenders alternate (the order flips every round) after warm-up: plain loop; served, sequential requests;
served, 2 concurrent clients. Prints requests/s (best and median of the rounds) and the served/plain ratios, the
CPU seconds each prediction took (server process tree + client, vs the plain loop's process: the work done, which
other jobs on shared cores do not change), and checks the served boxes against YOLO.predict's. Writes
benchmarks/results/serve_throughput.json.

    python benchmarks/serve_throughput.py [--model FOLDER] [--requests 30] [--rounds 3] [--size 640]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, RESULTS, load_line, pipeline_model, survey_image  # noqa: E402

MODEL_NAME = "wildtrain-bench-detector"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_model(folder: Path, store: Path) -> str:
    """The model folder logged and registered as wildtrain.registry does, in a sqlite store under `store`;
    returns the tracking URI."""
    import mlflow

    from wildtrain import families, params
    from wildtrain.contract import ModelCard
    from wildtrain.pipeline.register import requirements, signature
    from wildtrain.registry import PACKAGE, PYFUNC_CODE

    uri = f"sqlite:///{store / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("bench") if mlflow.get_experiment_by_name("bench") else \
        mlflow.set_experiment(experiment_id=mlflow.create_experiment("bench", (store / "artifacts").as_uri()))
    p = params.load(REPO / "params.yaml")
    predictor = families.load(folder, "cpu")
    with mlflow.start_run(run_name="serve-bench"):
        info = mlflow.pyfunc.log_model(name="model", python_model=str(PYFUNC_CODE), artifacts={"model": str(folder)},
                                       code_paths=[str(PACKAGE)],
                                       pip_requirements=requirements(REPO, ModelCard.load(folder), folder),
                                       signature=signature(predictor, p))
    mlflow.register_model(info.model_uri, MODEL_NAME)
    return uri


def serve(uri: str, port: int, log: Path) -> subprocess.Popen:
    """`mlflow models serve` as a user runs it (the venv's bin on PATH: it execs uvicorn)."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "WILDTRAIN_DEVICE": "cpu",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("PYTHONPATH", None)  # the logged model carries its own wildtrain (code_paths)
    cmd = ["mlflow", "models", "serve", "-m", f"models:/{MODEL_NAME}/1", "--env-manager", "local", "-h", "127.0.0.1",
           "-p", str(port)]
    return subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def tree_cpu(pid: int) -> float:
    """CPU seconds used so far by a process and its children (the server execs uvicorn)."""
    import psutil

    total = 0.0
    root = psutil.Process(pid)
    for proc in (root, *root.children(recursive=True)):
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    import requests

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"mlflow models serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise SystemExit(f"mlflow models serve not ready after {timeout} s:\n{log.read_text()[-3000:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a detector model folder (default: train one at --size with the pipeline, cached)")
    ap.add_argument("--size", type=int, default=640, help="image side (and training size of the default model)")
    ap.add_argument("--requests", type=int, default=30, help="predictions per contender per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conf", type=float, default=0.25)
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed benchmark still stops its server
    folder = Path(args.model).resolve() if args.model else pipeline_model(
        f"yolo11n_{args.size}", images=48, imgsz=args.size, epochs=5, start=pipeline_model())
    work = Path(tempfile.mkdtemp(prefix="wildtrain-bench-serve-"))
    proc = None
    try:
        from wildtrain import env

        env.configure(work)
        import requests
        from PIL import Image

        image = work / "survey.jpg"
        Image.fromarray(survey_image(7, args.size, args.size)).save(image, quality=95)
        uri = log_model(folder, work)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = work / "serve.log"
        t0 = time.perf_counter()
        proc = serve(uri, port, log)
        wait_ready(url, proc, log)
        print(f"server ready in {time.perf_counter() - t0:.1f} s", flush=True)

        options = {"conf": args.conf, "iou": 0.7, "max_det": 300}
        body = json.dumps({"dataframe_records": [{"image": base64.b64encode(image.read_bytes()).decode()}],
                           "params": options})
        headers = {"Content-Type": "application/json"}

        def post(session) -> dict:
            r = session.post(f"{url}/invocations", data=body, headers=headers, timeout=120)
            r.raise_for_status()
            return r.json()["predictions"][0]

        from ultralytics import YOLO

        from wildtrain.contract import ModelCard

        card = ModelCard.load(folder)
        yolo = YOLO(str(folder / card.weights), task="detect")

        def plain(n: int) -> tuple[float, float]:
            """(predictions/s, CPU s per prediction)"""
            t, c = time.perf_counter(), time.process_time()
            for _ in range(n):
                yolo.predict(str(image), device="cpu", verbose=False, **options)
            return n / (time.perf_counter() - t), (time.process_time() - c) / n

        def served(n: int, clients: int) -> tuple[float, float]:
            """(requests/s, CPU s per request: the server's and this client's)"""
            sessions = [requests.Session() for _ in range(clients)]
            share = [n // clients + (k < n % clients) for k in range(clients)]
            errors: list[BaseException] = []

            def client(k: int) -> None:
                try:
                    for _ in range(share[k]):
                        post(sessions[k])
                except BaseException as e:  # noqa: BLE001 — reported after the threads end
                    errors.append(e)

            threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
            t, c, server = time.perf_counter(), time.process_time(), tree_cpu(proc.pid)
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            if errors:
                raise errors[0]
            return n / (time.perf_counter() - t), (tree_cpu(proc.pid) - server + time.process_time() - c) / n

        # warm-up, and the served boxes against YOLO.predict's
        reference = yolo.predict(str(image), device="cpu", verbose=False, **options)[0].boxes
        answer = post(requests.Session())
        plain(3), served(3, 1), served(4, 2)
        got = sorted(answer["boxes"])
        want = sorted([round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)]
                      for x1, y1, x2, y2 in reference.xyxy.tolist())
        same = len(got) == len(want) and all(abs(a - b) <= 0.02 for g, w in zip(got, want) for a, b in zip(g, w))
        print(f"served boxes == YOLO.predict's: {same} ({len(got)} vs {len(want)} boxes)", flush=True)

        contenders = {"plain_yolo_predict": lambda: plain(args.requests),
                      "served_sequential": lambda: served(args.requests, 1),
                      "served_2_clients": lambda: served(args.requests, 2)}
        rates: dict[str, list[float]] = {k: [] for k in contenders}
        cpu: dict[str, list[float]] = {k: [] for k in contenders}
        loads = []
        for r in range(args.rounds):
            for name in (list(contenders) if r % 2 == 0 else list(reversed(contenders))):
                rate, cpu_each = contenders[name]()
                rates[name].append(rate)
                cpu[name].append(cpu_each)
            loads.append(load_line())
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}/s ({cpu[k][-1] * 1000:.0f} ms CPU each)"
                                                 for k, v in rates.items()) + f"; {loads[-1]}", flush=True)
        base_best, base_median = max(rates["plain_yolo_predict"]), statistics.median(rates["plain_yolo_predict"])
        cpu_best, cpu_median = min(cpu["plain_yolo_predict"]), statistics.median(cpu["plain_yolo_predict"])
        result = {"model": str(folder), "architecture": card.architecture, "imgsz": card.input["size"],
                  "image": f"{args.size}x{args.size} JPEG, {image.stat().st_size} bytes", "requests": args.requests,
                  "rounds": args.rounds, "per_s": {k: [round(x, 3) for x in v] for k, v in rates.items()},
                  "best_per_s": {k: round(max(v), 3) for k, v in rates.items()},
                  "median_per_s": {k: round(statistics.median(v), 3) for k, v in rates.items()},
                  "ratio_best": {k: round(max(v) / base_best, 3) for k, v in rates.items()},
                  "ratio_median": {k: round(statistics.median(v) / base_median, 3) for k, v in rates.items()},
                  "cpu_s_each": {k: [round(x, 4) for x in v] for k, v in cpu.items()},
                  # predictions per CPU second relative to the plain loop: the ratio other jobs on the cores do not move
                  "cpu_ratio_best": {k: round(cpu_best / min(v), 3) for k, v in cpu.items()},
                  "cpu_ratio_median": {k: round(cpu_median / statistics.median(v), 3) for k, v in cpu.items()},
                  "same_boxes": same, "goal": ">= 0.8", "load": loads}
        for name in contenders:
            print(f"  {name:20s} best {result['best_per_s'][name]:6.2f}/s  median {result['median_per_s'][name]:6.2f}/s"
                  f"  ratio to plain: best {result['ratio_best'][name]:.3f}, median {result['ratio_median'][name]:.3f};"
                  f"  CPU each: best {min(cpu[name]) * 1000:.0f} ms (ratio {result['cpu_ratio_best'][name]:.3f}), "
                  f"median {statistics.median(cpu[name]) * 1000:.0f} ms (ratio {result['cpu_ratio_median'][name]:.3f})")
        out = RESULTS / "serve_throughput.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written {out}")
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, 15)  # the server and the uvicorn it execs: its own session
            proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
