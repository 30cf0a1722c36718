"""The annotation loop against a real Label Studio server (its own venv, 127.0.0.1, a free port, a temporary
database), started and stopped by the `labelstudio` fixture, also when a test fails.

Push 5 images of the pipeline fixture's survey with the registered champion's boxes as pre-annotations, review
them through Label Studio's REST API as a person would (accept four, on the fifth delete one box and add one),
pull, and check that DVC sees the new source and that prepare's validation report counts the edits. The pipeline's
segmenter pushes polygons, which pull turns into masks. A server that is down and a wrong API key are one line
each, and leave nothing written.

Cost (2 busy cores): building .labelstudio/venv when absent (`make .labelstudio/venv/.installed`, pinned, uv: 58 s),
the server's first start (Django migrations into a new SQLite database: 46-195 s) once per Label Studio version
(`template`), then 19.5-29.8 s per session on a copy of that database (105 s for a first start at the load of a
23 s one); the three tests 119 s at load average 6.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from conftest import NETBLOCK, REPO, free_port, pipeline_env
from wildtrain.layout import VALIDATION_REPORT, Paths

pytestmark = pytest.mark.slow
PROJECT = "wildtrain test survey"


def guarded(netlog: Path):
    """The environment a Label Studio process starts in: under the network guard (it logs to `netlog`), with no
    LABEL_STUDIO_API_KEY from the caller (the folder's own key applies)."""
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "WILDTRAIN_NETLOG", "LABEL_STUDIO_API_KEY")}
    os.environ.update(PYTHONPATH=str(NETBLOCK), WILDTRAIN_NETLOG=str(netlog))
    os.environ.pop("LABEL_STUDIO_API_KEY", None)
    return saved


def restore(saved: dict) -> None:
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def template(netlog: Path) -> Path:
    """A Label Studio folder (migrated database with the admin user, its key, password and Django secret) made by a
    real first start of the pinned Label Studio, once per requirements-labelstudio.txt and server.py: the
    migrations are most of a first start (46-195 s). Kept in .labelstudio/test-template-<hash>; delete it to redo."""
    from wildtrain.annotate import server

    digest = hashlib.sha256((REPO / "requirements-labelstudio.txt").read_bytes()
                            + Path(server.__file__).read_bytes()).hexdigest()[:12]
    done = REPO / server.FOLDER / f"test-template-{digest}"
    if (done / "data").is_dir():
        return done
    build = Path(tempfile.mkdtemp(prefix=".test-template-", dir=REPO / server.FOLDER))
    (build / "venv").symlink_to(REPO / server.FOLDER / "venv")
    saved = guarded(netlog)
    try:
        server.up(build, free_port(), build)
        server.down(build)
    finally:
        restore(saved)
    (build / "venv").unlink()
    try:
        os.rename(build, done)
    except OSError:  # another worker made it first
        shutil.rmtree(build, ignore_errors=True)
    return done


@pytest.fixture(scope="session")
def labelstudio(tmp_path_factory):
    """A Label Studio server on 127.0.0.1 whose local files are served from the session's temp folder (where every
    test's repository lives), on a copy of the template's database; its own processes (the template's first start
    included) run under the network guard, which must stay silent."""
    from wildtrain.annotate import server

    binary = server.venv_binary(REPO / server.FOLDER)
    if not binary.is_file():  # the same target `make labelstudio` uses
        subprocess.run(["make", "-C", str(REPO), ".labelstudio/venv/.installed"], check=True, capture_output=True,
                       timeout=900)
    folder = tmp_path_factory.mktemp("labelstudio")
    netlog = folder / "network.log"
    made = template(netlog)
    for part in ("data", "api_key", "password", "secret_key"):
        (shutil.copytree if (made / part).is_dir() else shutil.copy2)(made / part, folder / part)
    (folder / "venv").symlink_to(REPO / server.FOLDER / "venv")
    docs = tmp_path_factory.getbasetemp()
    saved = guarded(netlog)
    try:
        srv = server.up(folder, free_port(), docs)
    finally:
        restore(saved)
    try:
        yield srv, docs, netlog
    finally:
        server.down(folder)
        assert not server.alive(srv.pid)


def cli(ws_env: dict, repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wildtrain.cli", *args], cwd=repo, env=ws_env, capture_output=True,
                          text=True, timeout=600)


def env_for(ws_env: dict, url: str, key: str, docs: Path) -> dict:
    return {**ws_env, "LABEL_STUDIO_URL": url, "LABEL_STUDIO_API_KEY": key, "LOCAL_FILES_DOCUMENT_ROOT": str(docs)}


def review(url: str, key: str, title: str) -> tuple[int, dict]:
    """As a reviewer in Label Studio: accept the pre-annotations of all tasks but the one with the most boxes; on
    that one delete its first box and draw a new one. Returns (boxes in the reviewed tasks, that task)."""
    from wildtrain.annotate.client import Client

    client = Client(url, key)
    tasks = client.tasks(client.project(title)["id"])
    assert len(tasks) == 5
    edited = max(tasks, key=lambda t: len(t["predictions"][0]["result"]))
    assert len(edited["predictions"][0]["result"]) >= 1
    total = 0
    for task in tasks:
        result = [dict(r) for r in task["predictions"][0]["result"]]
        if task is edited:
            w, h = result[0]["original_width"], result[0]["original_height"]
            result = result[1:] + [{"id": "drawn1", "type": "rectanglelabels", "from_name": "label",
                                    "to_name": "image", "original_width": w, "original_height": h,
                                    "value": {"x": 10, "y": 20, "width": 25, "height": 12.5, "rotation": 0,
                                              "rectanglelabels": ["zebra"]}}]
        client.call("POST", f"/api/tasks/{task['id']}/annotations/", {"result": result, "was_cancelled": False,
                                                                       "lead_time": 3.5})
        total += len(result)
    return total, edited


def test_push_review_pull_then_prepare_counts_the_edits(labelstudio, pipeline_repo, tmp_path):
    srv, docs, netlog = labelstudio
    ws = pipeline_repo.clone(tmp_path / "repo")
    env = env_for(ws.env, srv.url, srv.api_key, docs)
    survey = json.loads((ws.path / "data/source/survey/annotations.json").read_text())

    # the fixture's champion is barely trained and finds no box: the reviewed push uses a model folder whose random
    # weights find many (tests/tiny_models.py); the champion's own push checks the registry version tag
    from tiny_models import yolo_detector

    boxer = yolo_detector(tmp_path / "boxer")
    out = cli(env, ws.path, "annotate", "push", "data/source/survey/images", "--n", "5", "--project", PROJECT,
              "--model", str(boxer), "--conf", "0.05")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "5 of 24 new images" in out.stdout and "pre-annotated by folder:boxer" in out.stdout

    from wildtrain.annotate.client import Client

    client = Client(srv.url, srv.api_key)
    project = client.project(PROJECT)
    assert '<RectangleLabels name="label"' in project["label_config"]
    assert all(f'value="{c["name"]}"' in project["label_config"] for c in survey["categories"])
    tasks = client.tasks(project["id"])
    assert {p["model_version"] for t in tasks for p in t["predictions"]} == {"folder:boxer"}
    image = tasks[0]["data"]["image"]
    assert image.startswith("/data/local-files/?d=") and "data/source/survey/images/" in image
    served = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                             f"Authorization: Token {srv.api_key}", f"{srv.url}{image}"], capture_output=True,
                            text=True)
    assert served.stdout == "200"  # Label Studio shows the file in place, through local-files storage

    again = cli(env, ws.path, "annotate", "push", "data/source/survey/images", "--n", "5", "--project", PROJECT,
                "--strategy", "random")  # the registered champion
    assert again.returncode == 0 and "5 of 19 new images" in again.stdout  # the 5 pushed are not pushed twice
    assert len({t["data"]["image"] for t in client.tasks(project["id"])}) == 10
    for t in client.tasks(project["id"]):
        if t["id"] not in {x["id"] for x in tasks}:
            name, version = t["predictions"][0]["model_version"].split("/")
            assert name.startswith("wildtrain-") and version == "1"  # the champion's registry version
            client.call("DELETE", f"/api/tasks/{t['id']}/")

    reviewed_boxes, edited = review(srv.url, srv.api_key, PROJECT)
    out = cli(env, ws.path, "annotate", "pull", "--name", "reviewed", "--project", PROJECT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "boxes kept" in out.stdout and "edited 0, deleted 1, added 1" in out.stdout
    params = yaml.safe_load((ws.path / "params.yaml").read_text())
    assert params["data"]["source"] == "data/source/reviewed"
    status = ws.sh("dvc", "status").stdout
    assert "prepare:" in status and "data/source" in status

    prep = cli(env, ws.path, "prepare")
    assert prep.returncode == 0, prep.stderr[-2000:]
    report = json.loads((ws.path / Paths().reports / VALIDATION_REPORT).read_text())
    lineage = report["label_studio"]
    assert lineage["project_title"] == PROJECT and lineage["project_id"] == project["id"]
    assert lineage["tasks_reviewed"] == 5 and lineage["model_versions"] == [tasks[0]["predictions"][0]["model_version"]]
    assert lineage["boxes"] == {"kept": reviewed_boxes - 1, "edited": 0, "deleted": 1, "added": 1}
    pushed = {t["data"]["source_name"] for t in tasks}
    ids = {im["id"] for im in survey["images"] if im["file_name"] in pushed}
    before = sum(1 for a in survey["annotations"] if a["image_id"] not in ids)
    assert report["boxes"]["kept"] == before + reviewed_boxes  # the 5 images' boxes are the reviewed ones
    assert report["images"]["kept"] == 24
    assert (ws.path / "data/source/reviewed/label_studio/export.json").is_file()
    assert (netlog.read_text() if netlog.exists() else "") == ""  # Label Studio never reached beyond 127.0.0.1


def test_server_down_and_wrong_key_are_one_line_and_write_nothing(labelstudio, repo_copy):
    srv, docs, _ = labelstudio
    env = pipeline_env(repo_copy)
    subprocess.run(["git", "add", "-A"], cwd=repo_copy, check=True)
    (repo_copy / "images").mkdir()
    down_url = f"http://127.0.0.1:{free_port()}"
    for args in (["annotate", "push", "images", "--n", "2"], ["annotate", "pull", "--name", "x"]):
        out = cli(env_for(env, down_url, "k", docs), repo_copy, *args)
        assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
        assert f"Label Studio at {down_url} is not reachable" in out.stderr
        out = cli(env_for(env, srv.url, "wrong-key", docs), repo_copy, *args)
        assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
        assert f"Label Studio at {srv.url} refused the API key" in out.stderr
    status = subprocess.run(["git", "status", "--porcelain"], cwd=repo_copy, capture_output=True, text=True).stdout
    assert status.strip() == "", status
    assert sorted(p.name for p in (repo_copy / "data" / "source").iterdir()) == ["README.md"]


def test_segmenter_pushes_polygons_and_pull_reads_them_as_masks(labelstudio, pipeline_repo, tmp_path):
    """The pipeline's segmenter pre-annotates polygons; a reviewer draws one more on the first task and clears the
    second; pull turns the polygons into COCO masks of the new source, replacing the two images' old labels."""
    from wildtrain.annotate.client import Client
    from wildtrain.data import masks

    srv, docs, netlog = labelstudio
    ws = pipeline_repo.clone(tmp_path / "repo")
    env = env_for(ws.env, srv.url, srv.api_key, docs)
    title = "wildtrain test segmenter"
    out = cli(env, ws.path, "annotate", "push", "data/source/survey/images", "--n", "2", "--project", title,
              "--model", "models_segmenter")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "2 of 24 new images" in out.stdout and "polygons pre-annotated by folder:models_segmenter" in out.stdout
    client = Client(srv.url, srv.api_key)
    project = client.project(title)
    survey = json.loads((ws.path / "data/source/survey/annotations.json").read_text())
    assert '<PolygonLabels name="label"' in project["label_config"] and "background" not in project["label_config"]
    assert all(f'value="{c["name"]}"' in project["label_config"] for c in survey["categories"])
    tasks = sorted(client.tasks(project["id"]), key=lambda t: t["id"])
    assert all(r["type"] == "polygonlabels" for t in tasks for r in t["predictions"][0]["result"])
    again = cli(env, ws.path, "annotate", "push", "data/source/survey/images", "--n", "1", "--project", title)
    assert again.returncode == 2 and "labels with PolygonLabels" in again.stderr  # the detector draws boxes

    first, second = tasks
    drawn = {"id": "drawn1", "type": "polygonlabels", "from_name": "label", "to_name": "image",
             "original_width": 160, "original_height": 160,
             "value": {"points": [[10, 10], [50, 10], [50, 50]], "closed": True, "polygonlabels": ["zebra"]}}
    client.call("POST", f"/api/tasks/{first['id']}/annotations/",
                {"result": first["predictions"][0]["result"] + [drawn], "was_cancelled": False})
    client.call("POST", f"/api/tasks/{second['id']}/annotations/", {"result": [], "was_cancelled": False})
    out = cli(env, ws.path, "annotate", "pull", "--name", "segreviewed", "--project", title)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "added 1" in out.stdout and f"deleted {len(second['predictions'][0]['result'])}" in out.stdout
    pulled = json.loads((ws.path / "data/source/segreviewed/annotations.json").read_text())
    by_name = {im["file_name"]: im["id"] for im in pulled["images"]}
    first_id, second_id = (by_name[t["data"]["source_name"]] for t in (first, second))
    assert not [a for a in pulled["annotations"] if a["image_id"] == second_id]  # cleared: no animal
    mine = [a for a in pulled["annotations"] if a["image_id"] == first_id]
    assert len(mine) == len(first["predictions"][0]["result"]) + 1 and all(a.get("segmentation") for a in mine)
    zebra = next(c["id"] for c in pulled["categories"] if c["name"] == "zebra")
    triangle = next(a for a in mine if a["segmentation"] == [[16.0, 16.0, 80.0, 16.0, 80.0, 80.0]])
    assert triangle["category_id"] == zebra and triangle["bbox"] == [16.0, 16.0, 64.0, 64.0]
    area = masks.area(triangle["segmentation"], 160, 160)
    assert abs(area - 64 * 64 / 2) < 64  # the triangle's pixels, within its 1-px outline
    assert (netlog.read_text() if netlog.exists() else "") == ""
