"""`make ci-rerun` end to end on the shared tiny pipeline (`pipeline_repo`): the base is pushed to a local DVC remote;
CI-like fresh clones of three branches pull it and rerun only what each branch touches: nothing, the detector's
chain after one train param, everything from prepare after one annotation edit (two tests, so that the two
pytest-xdist workers can run them side by side; each worker pushes its own base, seconds)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from pipeline_fixture import SOURCE, git_clone
from test_e2e import ran_stages

pytestmark = pytest.mark.slow

HEADERS = ("| stage |", "| family |", "| param |", "| model |")
DETECTOR_DOWNSTREAM = ["train", "evaluate", "register", "evaluate_two_stage", "register_two_stage"]


def ci_rerun(ws, base: str, *extra: str):
    """`make ci-rerun` as the workflow runs it (`-o`: the venv is this test run's, not one for make to build)."""
    proc = ws.sh("make", "-o", ".venv/.installed", "ci-rerun", f"BASE={base}", *extra)
    return proc, (ws.path / "reports/ci.md").read_text()


def commit_all(ws, message: str) -> None:
    ws.sh("git", "add", "-A")
    ws.sh("git", "commit", "-qm", message)


@pytest.fixture(scope="module")
def origin(pipeline_repo, tmp_path_factory):
    """The base: the fixture's one tiny repro, pushed to a local remote that the repo's .dvc/config names; returns
    (the origin repository, BASE's commit)."""
    tmp = tmp_path_factory.mktemp("ci-origin")
    ws = pipeline_repo.clone(tmp / "origin")
    ws.sh("dvc", "remote", "add", "-d", "storage", str(tmp / "remote"))
    commit_all(ws, "dvc remote: local directory")
    assert "pushed" in ws.sh("dvc", "push").stdout
    return ws, ws.sh("git", "rev-parse", "HEAD").stdout.strip()


def table_rows(report: str, section: str) -> list[str]:
    body = report.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return [ln for ln in body.splitlines() if ln.startswith("| ") and not ln.startswith(HEADERS)]


def test_ci_rerun_pulls_and_reruns_only_what_a_branch_touches(origin, tmp_path: Path):
    origin, base = origin
    # 1) no pipeline change: everything pulled, nothing reruns
    ci = git_clone(origin.path, tmp_path / "ci")
    (ci.path / "NOTES.md").write_text("a change no stage depends on\n")
    commit_all(ci, "notes")
    proc, report = ci_rerun(ci, base)
    assert ran_stages(proc.stdout) == [], proc.stdout
    assert "**Nothing to rerun**" in report and "Pulled from DVC remote `storage`" in report, report
    assert "No param differs from BASE's." in report
    labels = [r.rstrip(" |").rsplit("|", 1)[1].strip() for r in table_rows(report, "Metrics vs BASE")]
    assert labels and set(labels) <= {"within noise", "no band"}, report

    # 2) one train param: only the detector's downstream reruns, the data stages stay pulled
    params = yaml.safe_load((ci.path / "params.yaml").read_text())
    assert params["train"]["epochs"] == 2
    params["train"]["epochs"] = 1
    (ci.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    commit_all(ci, "train: 1 epoch")
    raw_before = (ci.path / "data/raw/annotations.json").stat().st_mtime_ns
    proc, report = ci_rerun(ci, base)
    assert ran_stages(proc.stdout) == DETECTOR_DOWNSTREAM, proc.stdout
    assert (ci.path / "data/raw/annotations.json").stat().st_mtime_ns == raw_before  # pulled, not recomputed
    stages = table_rows(report, "Stages")
    assert [re.match(r"\| `([^`]+)`", r).group(1) for r in stages] == DETECTOR_DOWNSTREAM, report
    assert "param train modified" in stages[0] and "dep models changed" in stages[1], stages
    assert "`prepare`" in report.split("Not rerun (unchanged, pulled):")[1].splitlines()[0]
    assert "| `train.epochs` | 2 | 1 |" in report, report
    metrics = table_rows(report, "Metrics vs BASE")
    map_row = next(r for r in metrics if r.startswith("| detector | `map50_95` |"))
    cells = [c.strip() for c in map_row.strip("|").split("|")]
    base_value, head_value, delta, ci95, band, label = (float(cells[2]), float(cells[3]), float(cells[4]), cells[5],
                                                        cells[6], cells[7].strip("*"))
    assert abs(head_value - base_value - delta) < 2e-4 and ci95.startswith("[") and band.startswith("±"), map_row
    assert label == ("beyond noise" if abs(delta) > float(band[1:]) else "within noise"), map_row
    assert "test-set band" in report and "none match BASE's param set" in report  # tiny config: no replicates
    assert "**detector**, gate vs BASE's model: map50_95" in report, report
    assert re.search(r"\| detector \| BASE \| [^|]*family", report) and re.search(r"\| detector \| HEAD \| [^|]*family",
                                                                                   report), report
    for png in ("ci-detector-pr_curve.png", "ci-detector-confusion.png", "ci-classifier-confusion.png"):
        assert (ci.path / "reports" / png).read_bytes()[:4] == b"\x89PNG", png
    assert ci.network_log() == ""


def test_an_annotation_edit_reruns_everything_from_prepare(origin, tmp_path: Path):
    """One box moved in the versioned source, pushed as a PR author would: the plan starts at prepare, and the real
    rerun runs every stage of the DAG (all of them read what prepare writes) on the pulled source version."""
    origin, base = origin
    author = git_clone(origin.path, tmp_path / "author")
    author.sh("dvc", "pull", "-q", f"{SOURCE}.dvc")
    ann_file = author.path / SOURCE / "annotations.json"
    ann = json.loads(ann_file.read_text())
    ann["annotations"][0]["bbox"][0] += 1.0
    ann_file.write_text(json.dumps(ann))
    author.sh("dvc", "add", "-q", SOURCE)
    author.sh("dvc", "push", "-q")
    commit_all(author, "survey: one box moved")
    source_md5 = yaml.safe_load((author.path / f"{SOURCE}.dvc").read_text())["outs"][0]["md5"]
    everything = set(yaml.safe_load((author.path / "dvc.yaml").read_text())["stages"])
    fresh = git_clone(author.path, tmp_path / "ci-annotation")

    # the plan (DRY=1) first: nothing runs
    proc, report = ci_rerun(fresh, base, "DRY=1")
    stages = table_rows(report, "Stages")
    planned = [re.match(r"\| `([^`]+)`", r).group(1) for r in stages]
    assert planned[0] == "prepare" and f"dep {SOURCE.rsplit('/', 1)[0]}" in stages[0], report
    assert set(planned) == everything, planned
    assert all("would run" in r for r in stages) and ran_stages(proc.stdout) == []

    # the real rerun: every stage, prepare first, on the edited source
    proc, report = ci_rerun(fresh, base)
    ran = ran_stages(proc.stdout)
    assert ran[0] == "prepare" and set(ran) == everything and len(ran) == len(everything), proc.stdout
    stages = table_rows(report, "Stages")
    assert [re.match(r"\| `([^`]+)`", r).group(1) for r in stages] == ran, report
    assert all(" | ran | " in r for r in stages) and f"dep {SOURCE.rsplit('/', 1)[0]}" in stages[0], stages
    assert "Not rerun" not in report.split("## Stages", 1)[1].split("\n## ", 1)[0], report
    assert "No param differs from BASE's." in report
    validation = json.loads((fresh.path / "data/reports/validation.json").read_text())
    assert validation["data_source_md5"] == source_md5  # prepare read the PR's source version, not BASE's
    metrics = table_rows(report, "Metrics vs BASE")
    families = {r.split("|")[1].strip() for r in metrics}
    assert {"detector", "classifier", "two_stage", "segmenter"} <= families, report
    for row in metrics:
        cells = [c.strip() for c in row.strip("|").split("|")]
        if cells[6].startswith("±") and cells[4] != "—":
            assert cells[7].strip("*") == ("beyond noise" if abs(float(cells[4])) > float(cells[6][1:])
                                           else "within noise"), row
    assert fresh.network_log() == author.network_log() == ""
