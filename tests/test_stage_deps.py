"""Every DVC stage depends on every project file it runs (dvc.yaml's code deps are generated from the real imports
by tools/stage_deps.py, `make deps`), so editing any module a stage imports makes `dvc status` report that stage;
and main's dvc.lock and metrics are what main's code and params produce (no stage is stale), so a fresh clone's
`dvc repro` reproduces them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from stage_deps import REPO, rewrite, stage_files  # noqa: E402

STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(REPO)
    return any(rel == Path(d) or Path(d) in rel.parents for d in deps)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_cover_every_module_it_imports(name):
    stage = STAGES[name]
    deps = [d if isinstance(d, str) else next(iter(d)) for d in stage["deps"]]
    missing = sorted(str(f.relative_to(REPO)) for f in stage_files(stage["cmd"]) if not covered(f, deps))
    assert not missing, f"dvc.yaml stage '{name}' runs these files but does not depend on them: {missing}"


def test_prepare_depends_on_every_data_key_but_the_streaming_ones():
    """prepare lists its `data` keys one by one (so `-S data.stream=true` does not rerun it): a key added to `data`
    must be added there too, or declared a key that prepare does not read."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    listed = {p.split(".", 1)[1] for p in STAGES["prepare"]["params"] if p.startswith("data.")}
    assert listed == set(params["data"]) - {"stream", "stream_buffer"}, sorted(set(params["data"]) ^ listed)


def test_dvc_yaml_code_deps_are_the_generated_ones():
    text = (REPO / "dvc.yaml").read_text()
    new, changed = rewrite(text)
    assert not changed, f"dvc.yaml: the code deps of {changed} are not what the imports say: run `make deps`"
    assert new == text


def test_the_generator_rewrites_only_code_deps_and_keeps_the_rest():
    text = (REPO / "dvc.yaml").read_text()
    stale = text.replace("      - stages/train.py\n", "      - stages/train.py\n      - src/wildtrain/cli.py\n", 1)
    stale = stale.replace("      - src/wildtrain/contract.py\n", "", 1)
    new, changed = rewrite(stale)
    assert changed == ["train"] and new == text
    bare = "".join(line for line in text.splitlines(keepends=True)  # stages as one writes them: no code deps
                   if not re.match(r"^      - (src|stages)/", line))
    assert rewrite(bare)[0] == text


def test_the_closure_follows_imports_inside_functions_and_the_named_family():
    files = {str(f.relative_to(REPO)) for f in stage_files("python stages/evaluate.py two_stage")}
    assert {"src/wildtrain/families/two_stage.py", "src/wildtrain/families/detector/yolo.py",
            "src/wildtrain/families/classifier/backbones.py", "stages/_stage.py"} <= files
    assert "src/wildtrain/cli.py" not in files


def dvc_status() -> dict:
    proc = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout or "{}")


def test_committed_dvc_lock_matches_the_committed_code_and_params():
    """On a clean clone only outputs are missing; a changed dep or param means dvc.lock (and metrics/) were not
    rerun after a change: run `make repro` and commit them."""
    stale = {}
    for stage, entries in dvc_status().items():
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            deps = {k: v for k, v in entry.get("changed deps", {}).items() if v != "deleted"}
            if deps or entry.get("changed params"):
                stale[stage] = sorted(deps) + sorted(entry.get("changed params") or [])
    assert not stale, f"dvc.lock is stale for: {stale}"


def test_readme_figures_are_the_committed_metrics():
    readme = (REPO / "README.md").read_text()
    ev = json.loads((REPO / "metrics/eval.json").read_text())
    cls = json.loads((REPO / "metrics/eval_classifier.json").read_text())
    two = json.loads((REPO / "metrics/eval_two_stage.json").read_text())
    seg = json.loads((REPO / "metrics/eval_segmenter.json").read_text())
    claims = {"detector test mAP50": ev["map50"], "detector test mAP50-95": ev["map50_95"],
              "two-stage test mAP50": two["map50"], "classifier test accuracy": cls["accuracy"],
              "classifier test macro F1": cls["f1_macro"], "segmenter test mIoU": seg["miou"]}
    for label, value in claims.items():
        m = re.search(rf"{re.escape(label)} \*?\*?([0-9.]+)", readme)
        assert m, f"README states no '{label}' figure"
        assert float(m.group(1)) == round(value, 3), f"README {label} {m.group(1)} != committed {value:.4f}"
