"""`wildtrain data add` and how prepare reports a source's versioning (real `dvc add`, no mocks).

The end-to-end side (edits rerun prepare, remotes, lineage in MLflow) is in test_versioned_data.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml

from conftest import pipeline_env
from pipeline_fixture import write_survey
from test_errors import assert_one_line_error


def cli(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["python", "-m", "wildtrain.cli", *args], cwd=repo, env=pipeline_env(repo),
                          capture_output=True, text=True, timeout=300)


def prepare(repo: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(["python", "stages/prepare.py"], cwd=repo, env=pipeline_env(repo), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc


def dvc_md5(repo: Path, name: str) -> str:
    return yaml.safe_load((repo / f"data/source/{name}.dvc").read_text())["outs"][0]["md5"]


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def notes(proc: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in (proc.stdout + proc.stderr).splitlines() if "note:" in ln]


@pytest.fixture
def survey(tmp_path: Path) -> Path:
    return write_survey(tmp_path / "survey", num_images=6, image_size=64, max_objects=2)


def test_add_copies_versions_and_points_params_at_it(repo_copy: Path, survey: Path):
    before = (repo_copy / "params.yaml").read_text()
    proc = cli(repo_copy, "data", "add", str(survey))
    assert proc.returncode == 0, proc.stderr
    assert tree(repo_copy / "data/source/survey") == tree(survey)
    md5 = dvc_md5(repo_copy, "survey")
    assert md5.endswith(".dir") and md5 in proc.stdout
    after = (repo_copy / "params.yaml").read_text()
    assert yaml.safe_load(after)["data"]["source"] == "data/source/survey"
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert len(before.splitlines()) == len(after.splitlines()) and len(changed) == 1, changed  # comments kept
    assert changed[0][1].startswith("  source: data/source/survey ") and "# `synthetic`, a folder" in changed[0][1]
    env = pipeline_env(repo_copy)
    ignored = subprocess.run(["git", "check-ignore", "-q", "data/source/survey/annotations.json"], cwd=repo_copy, env=env)
    assert ignored.returncode == 0  # git keeps the .dvc file, DVC the data
    status = subprocess.run(["dvc", "status", "data/source/survey.dvc"], cwd=repo_copy, env=env, capture_output=True,
                            text=True, timeout=120)
    assert "up to date" in status.stdout, status.stdout

    out = prepare(repo_copy)
    assert notes(out) == []
    manifest = json.loads((repo_copy / "data/raw/manifest.json").read_text())
    report = json.loads((repo_copy / "data/reports/validation.json").read_text())
    for record in (manifest, report):
        assert record["data_source_md5"] == md5 and record["data_source_dvc"] == "data/source/survey.dvc"

    again = cli(repo_copy, "data", "add", str(survey))  # the same files again: nothing to replace
    assert again.returncode == 0 and "same files" in again.stdout and dvc_md5(repo_copy, "survey") == md5


def test_archives_unpack_to_the_same_dvc_hash_as_the_folder(repo_copy: Path, survey: Path, tmp_path: Path):
    assert cli(repo_copy, "data", "add", str(survey)).returncode == 0
    with tarfile.open(tmp_path / "survey-tar.tar.gz", "w:gz") as tf:
        tf.add(survey, arcname="survey")  # one top folder: unwrapped
    with zipfile.ZipFile(tmp_path / "flat.zip", "w") as zf:
        for p in sorted(survey.rglob("*")):
            zf.write(p, p.relative_to(survey).as_posix())
    for archive, name in (("survey-tar.tar.gz", "survey-tar"), ("flat.zip", "flat")):
        proc = cli(repo_copy, "data", "add", str(tmp_path / archive))
        assert proc.returncode == 0, proc.stderr
        assert tree(repo_copy / "data/source" / name) == tree(survey)
        assert dvc_md5(repo_copy, name) == dvc_md5(repo_copy, "survey")  # DVC stores the bytes once
    assert yaml.safe_load((repo_copy / "params.yaml").read_text())["data"]["source"] == "data/source/flat"


def test_add_refusals_are_one_line_and_change_nothing(repo_copy: Path, survey: Path, tmp_path: Path):
    assert cli(repo_copy, "data", "add", str(survey)).returncode == 0
    md5, params = dvc_md5(repo_copy, "survey"), (repo_copy / "params.yaml").read_text()
    listing = sorted(p.name for p in (repo_copy / "data/source").iterdir())
    other = write_survey(tmp_path / "other", num_images=4, image_size=64, max_objects=2)
    (tmp_path / "notes.txt").write_text("not a dataset")
    cases = [
        ((str(tmp_path / "missing"),), ("missing", "no such folder or archive")),
        ((str(other), "--name", "../escape"), ("'../escape'", "no '/', '..' or absolute path")),
        ((str(other), "--name", str(tmp_path / "abs")), ("absolute",)),
        ((str(other), "--name", "a/b"), ("'a/b'",)),
        ((str(other), "--name", ".."), ("'..'",)),
        ((str(tmp_path / "notes.txt"),), ("notes.txt", "neither a folder nor", "archive")),
        ((str(other), "--name", "survey"), ("data/source/survey already holds a different dataset", "--force")),
        ((str(repo_copy),), ("contains or lies inside data/source/",)),
    ]
    for args, needles in cases:
        assert_one_line_error(cli(repo_copy, "data", "add", *args), *needles)
    assert sorted(p.name for p in (repo_copy / "data/source").iterdir()) == listing
    assert not list((repo_copy / "data").glob(".source-*"))  # no staging folder left behind
    assert dvc_md5(repo_copy, "survey") == md5 and (repo_copy / "params.yaml").read_text() == params

    forced = cli(repo_copy, "data", "add", str(other), "--name", "survey", "--force")
    assert forced.returncode == 0, forced.stderr
    assert tree(repo_copy / "data/source/survey") == tree(other) and dvc_md5(repo_copy, "survey") != md5


def test_prepare_says_in_one_line_when_the_source_is_not_versioned(repo_copy: Path, survey: Path):
    def use(source: str) -> subprocess.CompletedProcess:
        text = (repo_copy / "params.yaml").read_text()
        current = yaml.safe_load(text)["data"]["source"]
        (repo_copy / "params.yaml").write_text(text.replace(f"source: {current}", f"source: {source}", 1))
        return prepare(repo_copy)

    assert notes(prepare(repo_copy)) == []  # synthetic: generated from params, nothing to version
    outside = use(str(survey))
    assert notes(outside) == [f"prepare: note: data source '{survey}' is not versioned by DVC (outside the repository: "
                              f"DVC neither reruns prepare when it changes nor stores it); version it with: "
                              f"wildtrain data add {survey}"]
    assert json.loads((repo_copy / "data/raw/manifest.json").read_text())["data_source_md5"] is None
    shutil.copytree(survey, repo_copy / "mydata")
    (in_repo,) = notes(use("mydata"))
    assert "outside data/source/" in in_repo and in_repo.endswith("wildtrain data add mydata")
    shutil.copytree(survey, repo_copy / "data/source/placed")
    (untracked,) = notes(use("data/source/placed"))
    assert "no .dvc file" in untracked and untracked.endswith("wildtrain data add data/source/placed")

    placed = cli(repo_copy, "data", "add", "data/source/placed")  # versions the files where they are
    assert placed.returncode == 0 and "(in place)" in placed.stdout, placed.stderr
    assert notes(prepare(repo_copy)) == []
    md5 = dvc_md5(repo_copy, "placed")
    assert json.loads((repo_copy / "data/raw/manifest.json").read_text())["data_source_md5"] == md5

    shutil.copy(survey / "images/scene_00000.png", repo_copy / "data/source/placed/images/copy.png")
    (stale,) = notes(prepare(repo_copy))  # edited after `dvc add`, prepared outside `dvc repro`
    assert "changed since data/source/placed.dvc" in stale and "dvc repro" in stale
    assert json.loads((repo_copy / "data/raw/manifest.json").read_text())["data_source_md5"] is None
