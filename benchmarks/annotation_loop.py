"""One annotation loop of 100 images through a real Label Studio server, without human time: seconds per phase.

1. server: `server.up` as `make labelstudio` runs it, in a new folder (a first start: Django migrations into a new
   SQLite database); .labelstudio/venv must exist (`make labelstudio` builds it).
2. push: `wildtrain annotate push survey/images --n 100` (a subprocess, as a user runs it) with a model folder's
   boxes as pre-annotations (benchmarks/results/annotation_selection/model0 when that benchmark ran, else a
   model whose random weights find boxes).
3. review: a simulated reviewer through Label Studio's REST API, one submitted annotation per task: each true box
   that a pre-annotated box of its class overlaps at IoU >= 0.7 is accepted as predicted (the prediction's result
   id is kept), every other true box is drawn, every other pre-annotated box deleted.
4. pull: `wildtrain annotate pull --name reviewed` (export, merge with the current source, `wildtrain data add`).

    nice python benchmarks/annotation_loop.py [--n 100] [--model FOLDER]

The repository is a fresh copy (tests/conftest.py copy_repo) in a temporary folder, removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from common import RESULTS, load_line  # noqa: E402


def iou(a: list[float], b: list[float]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = w * h
    return inter / (aw * ah + bw * bh - inter) if inter else 0.0


def reviewed_result(task: dict, truth: list[tuple[str, list[float]]], width: int, height: int) -> list[dict]:
    """The true boxes, each as the pre-annotated result it matches (accepted) or as a drawn one."""
    preds = [r for p in task.get("predictions") or [] for r in p.get("result") or []]

    def pixels(r: dict) -> list[float]:
        v = r["value"]
        return [v["x"] * width / 100, v["y"] * height / 100, v["width"] * width / 100, v["height"] * height / 100]

    out, used = [], set()
    for k, (name, box) in enumerate(truth):
        match = max((r for r in preds if r["id"] not in used and r["value"]["rectanglelabels"] == [name]),
                    key=lambda r: iou(pixels(r), box), default=None)
        if match is not None and iou(pixels(match), box) >= 0.7:
            used.add(match["id"])
            out.append(match)
            continue
        x, y, w, h = box
        out.append({"id": f"drawn{k}", "type": "rectanglelabels", "from_name": "label", "to_name": "image",
                    "original_width": width, "original_height": height,
                    "value": {"x": 100 * x / width, "y": 100 * y / height, "width": 100 * w / width,
                              "height": 100 * h / height, "rotation": 0, "rectanglelabels": [name]}})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--imgsz", type=int, default=160, help="survey image side (the selection benchmark trains at 160)")
    ap.add_argument("--model", type=Path, default=RESULTS / "annotation_selection" / "model0")
    args = ap.parse_args()

    from conftest import copy_repo, free_port, pipeline_env
    from wildtrain.annotate import server
    from wildtrain.annotate.client import Client
    from wildtrain.data.synthetic import generate

    tmp = Path(tempfile.mkdtemp(prefix="wildtrain-bench-loop-"))
    folder = tmp / "labelstudio"
    folder.mkdir()
    (folder / "venv").symlink_to(REPO / server.FOLDER / "venv")
    repo = copy_repo(tmp / "repo")
    env = pipeline_env(repo)
    survey = generate(repo / "survey", args.n + 20, args.imgsz, 8, 0.1, seed=7)
    truth = {im["file_name"]: [] for im in survey.images}
    names = dict(zip(survey.category_ids, survey.class_names))
    by_id = {im["id"]: im["file_name"] for im in survey.images}
    for a in survey.annotations:
        truth[by_id[a["image_id"]]].append((names[a["category_id"]], a["bbox"]))
    model = args.model
    if not (model / "model.json").is_file():
        from tiny_models import yolo_detector

        model = yolo_detector(tmp / "boxer")
        print(f"{args.model} not found (run benchmarks/annotation_selection.py): pre-annotations by a random-weight "
              f"model", flush=True)
    phases = {}
    try:
        t0 = time.perf_counter()
        srv = server.up(folder, free_port(), tmp)
        phases["server_first_start"] = time.perf_counter() - t0
        env = {**env, "LABEL_STUDIO_URL": srv.url, "LABEL_STUDIO_API_KEY": srv.api_key,
               "LOCAL_FILES_DOCUMENT_ROOT": str(tmp)}

        def cli(*a: str) -> str:
            out = subprocess.run([sys.executable, "-m", "wildtrain.cli", *a], cwd=repo, env=env, capture_output=True,
                                 text=True, timeout=1800)
            if out.returncode:
                raise SystemExit(f"wildtrain {' '.join(a)} failed: {out.stderr[-2000:]}")
            return out.stdout

        t0 = time.perf_counter()
        pushed = cli("annotate", "push", "survey/images", "--n", str(args.n), "--project", "bench loop",
                     "--model", str(model))
        phases["push"] = time.perf_counter() - t0
        print(pushed.strip().splitlines()[-1], flush=True)

        t0 = time.perf_counter()
        client = Client(srv.url, srv.api_key)
        tasks = client.tasks(client.project("bench loop")["id"])
        for task in tasks:
            name = task["data"]["source_name"]
            result = reviewed_result(task, truth[name], args.imgsz, args.imgsz)
            client.call("POST", f"/api/tasks/{task['id']}/annotations/", {"result": result, "was_cancelled": False})
        phases["review_api"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        pulled = cli("annotate", "pull", "--name", "reviewed", "--project", "bench loop")
        phases["pull_and_data_add"] = time.perf_counter() - t0
        print(pulled.strip(), flush=True)
        lineage = json.loads((repo / "data/source/reviewed/label_studio/lineage.json").read_text())
    finally:
        server.down(folder)
        subprocess.run(["rm", "-rf", str(tmp)], check=False)
    report = {"n": args.n, "tasks": len(tasks), "imgsz": args.imgsz, "model": str(model.name),
              "seconds": {k: round(v, 1) for k, v in phases.items()},
              "loop_seconds_without_server_start": round(sum(v for k, v in phases.items() if k != "server_first_start"), 1),
              "boxes": lineage["boxes"], "load": load_line()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "annotation_loop.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
