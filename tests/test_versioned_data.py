"""The user's source under DVC, end to end on the shared tiny pipeline (`pipeline_repo`): its hash in every
lineage record, edits that rerun prepare, and a local-directory remote that brings everything back."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from pipeline_fixture import SOURCE, git_clone
from test_e2e import ran_stages
from wildtrain.tracking.lineage import hash_tree

pytestmark = pytest.mark.slow

UP_TO_DATE = "Data and pipelines are up to date."
# What a fresh clone must get back byte for byte: the source, every stage output, the metrics.
RESTORED = [SOURCE, "data/raw", "data/coco", "data/yolo", "data/crops", "data/predictions", "data/reports",
            "models", "models_classifier", "metrics"]


def tracked(path: Path) -> dict[str, str]:
    """sha256 per file that DVC tracks (Ultralytics' labels/*.cache are .dvcignore'd: never stored or restored)."""
    return {rel: h for rel, h in hash_tree(path).items() if not rel.endswith(".cache")}


def source_md5(repo: Path) -> str:
    return yaml.safe_load((repo / f"{SOURCE}.dvc").read_text())["outs"][0]["md5"]


def changed_stages(status: str) -> list[str]:
    """Stage names `dvc status` lists (lines 'name:' at column 0)."""
    return [ln[:-1] for ln in status.splitlines() if ln.endswith(":") and not ln.startswith((" ", "\t"))]


def mlflow_query(ws, code: str) -> str:
    """Run `code` with `c` = an MlflowClient on the workspace's store; its last stdout line."""
    script = ("import json, mlflow; from mlflow.tracking import MlflowClient; "
              f"mlflow.set_tracking_uri('sqlite:///{ws.path / 'mlflow.db'}'); c = MlflowClient(); " + code)
    return ws.sh("python", "-c", script).stdout.strip().splitlines()[-1]


def test_source_hash_is_in_every_lineage_record(pipeline_repo):
    repo = pipeline_repo.path
    md5 = source_md5(repo)
    assert md5.endswith(".dir")
    for record in ("data/raw/manifest.json", "data/reports/validation.json", "metrics/data.json"):
        assert json.loads((repo / record).read_text())["data_source_md5"] == md5, record
    for card in ("models/model.json", "models_classifier/model.json", "models_segmenter/model.json"):
        assert json.loads((repo / card).read_text())["training"]["data_source_md5"] == md5, card
    runs = json.loads(mlflow_query(pipeline_repo, (
        "runs = c.search_runs([mlflow.get_experiment_by_name('wildtrain').experiment_id], "
        "filter_string=\"tags.mlflow.runName LIKE 'train-%'\"); "
        "print(json.dumps([[r.data.tags.get('data_source_md5'), r.data.params.get('data.data_source_md5'), "
        "r.data.tags.get('data_source')] for r in runs]))")))
    assert len(runs) == 3 and all(r == [md5, md5, SOURCE] for r in runs), runs  # detector, classifier, segmenter
    versions = json.loads(mlflow_query(pipeline_repo, (
        "print(json.dumps([[v.tags.get('data_source_md5'), v.tags.get('git_commit'), v.tags.get('dvc_stage.prepare')] "
        "for name in ('wildtrain-detector', 'wildtrain-classifier', 'wildtrain-two-stage', 'wildtrain-segmenter') "
        "for v in c.search_model_versions(f\"name='{name}'\")]))")))
    first_commit = pipeline_repo.sh("git", "rev-parse", "HEAD~1").stdout.strip()  # "tiny config, survey source"
    assert len(versions) == 4 and all(v[0] == md5 and v[1] == first_commit and v[2] for v in versions), versions


def test_editing_the_tracked_source_reruns_prepare(pipeline_repo, tmp_path: Path):
    ws = pipeline_repo.clone(tmp_path / "repo")
    src = ws.path / SOURCE
    os.utime(src / "images/scene_00003.png")  # a touched file, same bytes: nothing to redo
    assert ws.sh("dvc", "status").stdout.strip() == UP_TO_DATE

    def coco(change) -> None:
        data = json.loads((src / "annotations.json").read_text())
        change(data)
        (src / "annotations.json").write_text(json.dumps(data))

    def edit_annotation() -> None:
        coco(lambda d: d["annotations"][0]["bbox"].__setitem__(0, d["annotations"][0]["bbox"][0] + 1.0))

    def add_image() -> None:
        noise = np.random.default_rng(7).integers(0, 255, (160, 160, 3), dtype=np.uint8)
        Image.fromarray(noise).save(src / "images/new_scene.png")
        coco(lambda d: (d["images"].append({"id": 1000, "file_name": "new_scene.png", "width": 160, "height": 160}),
                        d["annotations"].append({"id": 1000, "image_id": 1000, "category_id": 1,
                                                 "bbox": [10.0, 10.0, 30.0, 20.0], "area": 600.0, "iscrowd": 0})))

    def remove_image() -> None:
        (src / "images/scene_00001.png").unlink()
        coco(lambda d: (d.__setitem__("images", [im for im in d["images"] if im["id"] != 2]),
                        d.__setitem__("annotations", [a for a in d["annotations"] if a["image_id"] != 2])))

    expected = {"edit": 24, "add": 25, "remove": 24}  # images kept afterwards (none quarantined)
    for name, edit in (("edit", edit_annotation), ("add", add_image), ("remove", remove_image)):
        before = source_md5(ws.path)
        edit()
        status = ws.sh("dvc", "status").stdout
        assert {"prepare", f"{SOURCE}.dvc"} <= set(changed_stages(status)), (name, status)
        assert "modified:           data/source" in status, (name, status)
        repro = ws.sh("dvc", "repro", "prepare")
        assert f"Verifying data sources in stage: '{SOURCE}.dvc'" in repro.stdout, (name, repro.stdout)
        assert ran_stages(repro.stdout) == ["prepare"], (name, repro.stdout)
        after = source_md5(ws.path)  # `dvc repro` re-added the edited source and updated its .dvc file
        assert after != before, name
        report = json.loads((ws.path / "data/reports/validation.json").read_text())
        assert report["data_source_md5"] == after, name
        assert (report["images"]["kept"], report["images"]["quarantined"]) == (expected[name], 0), (name, report["images"])
        left = changed_stages(ws.sh("dvc", "status").stdout)
        assert "prepare" not in left and f"{SOURCE}.dvc" not in left and "convert" in left, (name, left)
    assert ws.network_log() == ""


def test_local_remote_round_trip_and_restore_from_model_tags(pipeline_repo, tmp_path: Path):
    remote = tmp_path / "remote"
    origin = pipeline_repo.clone(tmp_path / "origin")
    origin.sh("dvc", "remote", "add", "-d", "storage", str(remote))
    origin.sh("git", "commit", "-qam", "dvc remote: local directory")
    pushed = origin.sh("dvc", "push")
    assert "files pushed" in pushed.stdout, pushed.stdout

    fresh = git_clone(origin.path, tmp_path / "fresh")
    assert not (fresh.path / SOURCE).exists() and not (fresh.path / "models").exists()
    fresh.sh("dvc", "pull")
    assert fresh.sh("dvc", "status").stdout.strip() == UP_TO_DATE
    repro = fresh.sh("dvc", "repro")
    assert ran_stages(repro.stdout) == [] and UP_TO_DATE in repro.stdout, repro.stdout
    for path in RESTORED:
        want = tracked(pipeline_repo.path / path)
        assert want and tracked(fresh.path / path) == want, path

    # The source moves on (a new version, pushed); the registered model's tags still get its own data back.
    (origin.path / SOURCE / "images/scene_00002.png").unlink()
    origin.sh("dvc", "add", SOURCE)
    origin.sh("git", "commit", "-qam", "survey: one image less")
    origin.sh("dvc", "push")
    tags = json.loads(mlflow_query(pipeline_repo, (
        "v = c.get_model_version_by_alias('wildtrain-detector', 'champion'); "
        "print(json.dumps({k: v.tags[k] for k in ('git_commit', 'data_source', 'data_source_md5')}))")))
    fresh.sh("git", "pull", "-q")
    fresh.sh("dvc", "pull")
    assert source_md5(fresh.path) != tags["data_source_md5"]
    # 1) git commit tag: that commit's .dvc file, then pull just the source.
    fresh.sh("git", "checkout", tags["git_commit"], "--", f"{tags['data_source']}.dvc")
    fresh.sh("dvc", "pull", f"{tags['data_source']}.dvc")
    assert hash_tree(fresh.path / SOURCE) == hash_tree(pipeline_repo.path / SOURCE)
    # 2) the hash alone, in a new clone with an empty cache: a .dvc file naming it, pulled from the remote
    #    (`hash: md5` is needed: without it DVC 3 reads the file as DVC 2's `md5-dos2unix` and finds nothing).
    bare = git_clone(origin.path, tmp_path / "bare")
    (bare.path / "data/source/model-data.dvc").write_text(
        yaml.safe_dump({"outs": [{"md5": tags["data_source_md5"], "hash": "md5", "path": "model-data"}]}))
    bare.sh("dvc", "pull", "data/source/model-data.dvc")
    assert hash_tree(bare.path / "data/source/model-data") == hash_tree(pipeline_repo.path / SOURCE)
    assert origin.network_log() == fresh.network_log() == bare.network_log() == ""
