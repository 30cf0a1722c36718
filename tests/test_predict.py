"""`wildtrain predict` on what users point it at: a folder and an archive mixing small and large images with one
broken file, a list of paths, a GeoTIFF; the default model (the two-stage champion) and a local model folder.
The served model (a real `mlflow models serve` on loopback) answers base64 images with the same boxes as
`wildtrain predict`, refuses bad requests with a 4xx and one clear line, and keeps serving; the logged model
loads where this repository is not installed."""

from __future__ import annotations

import base64
import csv
import io
import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, free_port, stop, wait_for_http

pytestmark = pytest.mark.slow
TWO_STAGE = "models:/wildtrain-two-stage@champion"
DETECTOR = "models:/wildtrain-detector@champion"


def survey_folder(repo: Path, dst: Path) -> Path:
    """Small test scenes, a large mosaic of them (sliced at predict time), an RGBA and a grey copy, a broken file."""
    raw = sorted((repo / "data/raw/images").iterdir())
    (dst / "flight1").mkdir(parents=True)
    for f in raw[:2]:
        shutil.copy(f, dst / "flight1" / f.name)
    tiles = [np.asarray(Image.open(f).convert("RGB")) for f in raw[:12]]
    mosaic = np.concatenate([np.concatenate(tiles[r * 4:(r + 1) * 4], axis=1) for r in range(3)], axis=0)
    Image.fromarray(mosaic).save(dst / "large_mosaic.png")  # 640 x 480 from 160 px scenes
    Image.open(raw[2]).convert("RGBA").save(dst / "alpha.png")
    Image.open(raw[3]).convert("L").save(dst / "grey.jpg")
    (dst / "broken.png").write_bytes(raw[4].read_bytes()[:300])  # truncated
    return dst


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def predict(ws, *args: str, check_code: int | None = 0):
    proc = ws.sh("python", "-m", "wildtrain.cli", "predict", *args, check=False)
    if check_code is not None:
        assert proc.returncode == check_code, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_predict_folder_archive_list_and_geotiff(pipeline_repo, tmp_path):
    ws = pipeline_repo.clone(tmp_path / "repo")
    images = survey_folder(ws.path, tmp_path / "survey")

    out = tmp_path / "default"
    proc = predict(ws, str(images), "--out", str(out), "--conf", "0.001", check_code=3)  # 3: partial
    assert "1 skipped" in proc.stdout and "Traceback" not in proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["model_card"]["family"] == "two_stage"  # the default: the two-stage champion
    assert report["images_in"] == 6 and report["predicted"] == 5

    out = tmp_path / "out_folder"  # the tiny detector (2 epochs) finds boxes at a low threshold; its classifier may not
    predict(ws, str(images), "--out", str(out), "--model", "models", "--conf", "0.001", "--draw", check_code=3)
    report = json.loads((out / "report.json").read_text())
    assert report["model_card"]["family"] == "detector" and report["images_in"] == 6 and report["predicted"] == 5
    assert [s["file"] for s in report["skipped"]] == ["broken.png"] and report["skipped"][0]["reason"]
    boxes = rows(out / "detections.csv")
    assert list(boxes[0]) == ["image_path", "xmin", "ymin", "xmax", "ymax", "label", "score"]
    assert {r["label"] for r in boxes} <= set(report["model_card"]["class_names"])
    mosaic = [r for r in boxes if r["image_path"] == "large_mosaic.png"]
    assert mosaic and max(float(r["xmax"]) for r in mosaic) > 320  # found across the whole mosaic, in its pixels
    counts = rows(out / "counts.csv")
    assert counts[-1]["image_path"] == "TOTAL" and int(counts[-1]["total"]) == len(boxes)
    assert {r["image_path"] for r in counts[:-1]} == {"flight1/" + f.name for f in (images / "flight1").iterdir()} | {
        "large_mosaic.png", "alpha.png", "grey.jpg"}
    coco = json.loads((out / "detections.json").read_text())
    assert len(coco["annotations"]) == len(boxes) and len(coco["images"]) == 5
    assert len(list((out / "draw").rglob("*.jpg"))) == 5

    archive = tmp_path / "survey.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in sorted(images.rglob("*")):
            if f.is_file():
                z.write(f, f"survey/{f.relative_to(images)}")
    out_zip = tmp_path / "out_zip"
    predict(ws, str(archive), "--out", str(out_zip), "--model", "models", "--conf", "0.001", check_code=3)
    same = [{**r, "image_path": r["image_path"].split("/", 1)[1]} for r in rows(out_zip / "detections.csv")]
    assert same == boxes  # the same images, the same boxes, wherever they come from

    listing = tmp_path / "list.txt"
    listing.write_text(f"# two scenes\n{images / 'alpha.png'}\nsurvey/grey.jpg\n")
    out_list = tmp_path / "out_list"
    predict(ws, str(listing), "--out", str(out_list), "--model", "models", "--slice", "off")
    report = json.loads((out_list / "report.json").read_text())
    assert report["model_card"]["family"] == "detector" and report["predicted"] == 2 and not report["skipped"]

    import rasterio
    from rasterio.transform import from_origin

    scene = np.asarray(Image.open(images / "large_mosaic.png").convert("RGB"))
    geo = tmp_path / "geo" / "ortho.tif"
    geo.parent.mkdir()
    transform = from_origin(500000.0, 8000000.0, 0.05, 0.05)  # UTM 33S, 5 cm pixels
    with rasterio.open(geo, "w", driver="GTiff", width=scene.shape[1], height=scene.shape[0], count=3,
                       dtype="uint8", crs="EPSG:32733", transform=transform) as dst:
        dst.write(np.moveaxis(scene, -1, 0))
    out_geo = tmp_path / "out_geo"
    predict(ws, str(geo.parent), "--out", str(out_geo), "--conf", "0.001", "--model", "models")
    features = json.loads((out_geo / "detections.geojson").read_text())["features"]
    plain = rows(out_geo / "detections.csv")
    assert len(features) == len(plain) > 0
    f, r = features[0], plain[0]
    x0, y0 = float(r["xmin"]), float(r["ymin"])
    assert f["properties"]["crs"] == "EPSG:32733"
    assert f["properties"]["map_bbox"][:2] == pytest.approx([500000.0 + 0.05 * x0, 8000000.0 - 0.05 * y0], abs=1e-3)
    lon, lat = f["geometry"]["coordinates"][0][0]
    assert 14.9 < lon < 15.1 and -18.1 < lat < -17.9  # WGS84, as GeoJSON requires: southern Africa


def test_predict_refuses_bad_arguments_in_one_line(pipeline_repo, tmp_path):
    ws = pipeline_repo.clone(tmp_path / "repo")
    for args, needle in ((["no/such/folder"], "no such file or folder"),
                         (["data", "--model", "models:/nope@champion"], "--model models:/nope@champion"),
                         (["data", "--model", "README.md"], "neither a model folder"),
                         (["data/raw/images", "--model", "models", "--slice", "7"], "--slice 7: must be auto, off")):
        proc = predict(ws, *args, "--out", str(tmp_path / "o"), check_code=2)
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and needle in errors[0] and "Traceback" not in proc.stderr, proc.stderr[-2000:]


def post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (90, 110, 70)).save(buf, format="PNG")
    return buf.getvalue()


def test_served_model_answers_images_and_refuses_bad_requests(pipeline_repo, tmp_path):
    ws = pipeline_repo.clone(tmp_path / "repo")
    image = sorted((ws.path / "data/raw/images").iterdir())[0]
    out = tmp_path / "out"
    predict(ws, str(image), "--out", str(out), "--conf", "0.001", "--model", DETECTOR)
    expected = [[round(float(r[k]), 1) for k in ("xmin", "ymin", "xmax", "ymax")] + [r["label"]]
                for r in rows(out / "detections.csv")]
    assert expected  # the tiny detector finds something at this threshold: the comparison below means something

    port = free_port()
    env = {**ws.env, "MLFLOW_TRACKING_URI": f"sqlite:///{ws.path / 'mlflow.db'}", "WILDTRAIN_MAX_PIXELS": "250000",
           "WILDTRAIN_SERVE_PATHS": str(image.parent)}
    log = open(tmp_path / "serve.log", "w")  # a file, not a pipe: a full pipe would stall the server
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", DETECTOR, "--env-manager",
                               "local", "-h", "127.0.0.1", "-p", str(port)], cwd=ws.path, env=env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/ping", server)
        good = {"dataframe_split": {"columns": ["image"], "data": [[b64(image.read_bytes())]]},
                "params": {"conf": 0.001}}
        status, body = post(f"{url}/invocations", good)
        assert status == 200, body
        (answer,) = body["predictions"]
        served = [[round(v, 1) for v in (x, y, x + w, y + h)] + [label]
                  for (x, y, w, h), label in zip(answer["boxes"], answer["labels"])]
        assert len(served) == len(expected)  # the same boxes as wildtrain predict (CSV rounds to 0.01 px)
        for got, want in zip(sorted(served), sorted(expected)):
            assert got[4] == want[4] and max(abs(a - b) for a, b in zip(got[:4], want[:4])) <= 0.11, (got, want)

        bad = {"not an image": {"dataframe_split": {"columns": ["image"], "data": [[b64(b"hello, not a picture")]]}},
               "truncated": {"dataframe_split": {"columns": ["image"], "data": [[b64(image.read_bytes()[:200])]]}},
               "too large": {"dataframe_split": {"columns": ["image"], "data": [[b64(png(600, 600))]]}},
               "no image field": {"dataframe_split": {"columns": ["picture"], "data": [["x"]]}},
               "bad option": {"dataframe_split": {"columns": ["image"], "data": [[b64(image.read_bytes())]]},
                              "params": {"slice": "7"}}}
        for case, request in bad.items():
            status, body = post(f"{url}/invocations", request)
            assert 400 <= status < 500, (case, status, body)
            assert body.get("message"), (case, body)
            status, _ = post(f"{url}/invocations", good)
            assert status == 200, f"the server stopped serving after: {case}"
        status, body = post(f"{url}/invocations", bad["too large"])
        assert "over the limit of 250,000 pixels" in body["message"]

        # image_path: inside WILDTRAIN_SERVE_PATHS it is read; outside, one answer whether the file exists or not
        status, body = post(f"{url}/invocations", {"dataframe_split": {"columns": ["image_path"],
                                                                       "data": [[str(image)]]}, "params": {"conf": 0.001}})
        assert status == 200 and len(body["predictions"][0]["boxes"]) == len(expected), body
        answers = set()
        for path in (ws.path / "params.yaml", ws.path / "no-such-file.png", Path("/etc/passwd"),
                     image.parent / ".." / "no-such-file.png"):
            status, body = post(f"{url}/invocations", {"dataframe_split": {"columns": ["image_path"],
                                                                           "data": [[str(path)]]}})
            # MLflow's scoring server prefixes "Failed to predict data '<the request's own frame>'. Error: "
            answers.add((status, body.get("message", "").split("Error: ", 1)[-1].replace(str(path), "<path>")))
        assert answers == {(400, "row 0: image_path '<path>': image_path is outside the folders this server may "
                                 "read (WILDTRAIN_SERVE_PATHS)")}, answers
    finally:
        stop(server)
        log.close()
    served_log = (tmp_path / "serve.log").read_text(errors="replace")
    assert "attempting AutoUpdate" not in served_log and "pip install" not in served_log, served_log[-3000:]


def test_logged_model_loads_where_the_repository_is_not_installed(pipeline_repo, tmp_path):
    """A bare venv that sees the project's third-party packages but not wildtrain: the model carries its code."""
    import site

    env_dir = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    packages = next(p for p in site.getsitepackages() if p.endswith("site-packages"))
    target = next((env_dir / "lib").glob("python*/site-packages"))
    (target / "project_packages.pth").write_text(packages + "\n")  # a plain path: its own .pth files stay unread
    image = sorted((pipeline_repo.path / "data/raw/images").iterdir())[0]
    code = f"""
import importlib.util, sys
assert importlib.util.find_spec("wildtrain") is None, "wildtrain is installed here"
import mlflow, pandas as pd
mlflow.set_tracking_uri("sqlite:///{pipeline_repo.path / 'mlflow.db'}")
model = mlflow.pyfunc.load_model("{TWO_STAGE}")
rows = model.predict(pd.DataFrame({{"image": [open("{image}", "rb").read()]}}), params={{"conf": 0.001}})
import wildtrain
print(len(rows), sorted(rows[0]), wildtrain.__file__)
"""
    env = {k: v for k, v in pipeline_repo.env.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(env_dir / "bin" / "python"), "-c", code], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("1 ['boxes', 'counts', 'labels', 'scores'] ")
    assert "/artifacts/code/wildtrain/__init__.py" in last and str(REPO) not in last  # the copy the model carries
