"""The CLI's conventions, as a user meets them: `--version`, `-h`, shell completion (offline), choices declared as
choices (and the same lists the code acts on), flags shown as flags, `--out/-o` wherever a command writes;
`wildtrain models` against a real sqlite registry; `make clean` keeps the registry and `make clean-all` asks."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from conftest import REPO, pipeline_env
from test_errors import assert_one_line_error


def cli(*args: str, cwd: Path = REPO, netlog: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    full = {**pipeline_env(REPO, netlog), **env}
    return subprocess.run([sys.executable, "-m", "wildtrain.cli", *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=300)


def commands() -> list[list[str]]:
    """Every command path of the app: [], ["predict"], ["data", "convert"], ..."""
    import typer.main

    from wildtrain.cli import app

    def walk(cmd, path):
        yield path
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, [*path, name])

    return list(walk(typer.main.get_command(app), []))


def test_version_and_short_help():
    import wildtrain

    out = cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"wildtrain {wildtrain.__version__}", out.stderr
    for args in (["-h"], ["predict", "-h"], ["data", "convert", "-h"], ["train", "detector", "-h"]):
        short, long = cli(*args), cli(*args[:-1], "--help")
        assert short.returncode == 0 and "Usage:" in short.stdout and short.stdout == long.stdout, short.stderr


def test_help_shows_flags_as_flags_and_choices_as_choices():
    from typer.testing import CliRunner

    from wildtrain.cli import app

    runner = CliRunner()
    for path in commands():
        shown = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"}, prog_name="wildtrain")
        assert shown.exit_code == 0, (path, shown.output)
        assert "<bool>" not in shown.output, (path, shown.output)
    text = {tuple(p): runner.invoke(app, [*p, "--help"], env={"COLUMNS": "200"}).output
            for p in (["predict"], ["export"], ["data", "convert"], ["evaluate"], ["replicates"])}
    assert "--draw" in text[("predict",)] and "--no-draw" in text[("predict",)]
    assert "<auto|off|SIZE>" in text[("predict",)] and "<auto|cpu|cuda|cuda:N|mps>" in text[("predict",)]
    assert "<stac|dlpk|onnx|torchscript|openvino|card>" in text[("export",)]
    assert "<coco|voc|yolo|csv|masks>" in text[("data", "convert")] and "<clip|drop|fail>" in text[("data", "convert")]
    assert "<detector|classifier|two_stage|segmenter|yoloseg>" in text[("evaluate",)]
    assert "detector|classifier|two_stage|segmenter" in text[("replicates",)]


def test_the_choices_are_the_lists_the_code_acts_on():
    from wildtrain import cli, families, params, publish
    from wildtrain.data import formats
    from wildtrain.data.validate import POLICIES

    def literal(cls, field):
        return typing.get_args(typing.get_type_hints(cls)[field])

    assert tuple(f.value for f in cli.FamilyName) == families.FAMILIES
    assert typing.get_args(cli.Publication) == publish.FORMATS
    assert typing.get_args(cli.DataFormat) == tuple(formats.WRITERS)  # label_studio is read only
    assert typing.get_args(cli.SourceFormat) == ("auto", *formats.FORMATS) == literal(params.Data, "format")
    assert typing.get_args(cli.BoxPolicy) == POLICIES == literal(params.Data, "invalid_boxes")
    assert sorted(typing.get_args(cli.Unannotated)) == sorted(literal(params.Data, "unannotated"))
    assert typing.get_args(cli.Framework) == literal(params.Train, "framework")
    from wildtrain.annotate.select import STRATEGIES
    assert typing.get_args(cli.Strategy) == STRATEGIES
    ok_slice, _ = params.PREDICT_CHECKS["slice"]
    assert all(ok_slice(v) for v in cli.SLICES) and not ok_slice("sideways")


def test_a_value_outside_the_choices_is_one_line_before_anything_runs(tmp_path):
    bad = cli("export", "--model", str(tmp_path / "nope"), "--to", "pdf", "-o", str(tmp_path / "out"))
    assert_one_line_error(bad, "'pdf' is not one of 'stac', 'dlpk', 'onnx', 'torchscript', 'openvino', 'card'")
    assert_one_line_error(cli("evaluate", "panoptic"), "'panoptic' is not one of 'detector'")
    assert_one_line_error(cli("train", "detector", "--framework", "detectron"), "'detectron' is not one of")
    assert_one_line_error(cli("predict", "x", "--draw", "true"), "predict")  # a flag takes no value
    assert not (tmp_path / "out").exists()


def test_every_command_that_writes_takes_out_and_o():
    import typer.main

    from wildtrain.cli import app

    group = typer.main.get_command(app)
    for path in (["predict"], ["export"], ["data", "convert"]):
        cmd = group
        for name in path:
            cmd = cmd.commands[name]
        out = [p for p in cmd.params if p.name == "out"]
        assert out and sorted(out[0].opts) == ["--out", "-o"] and out[0].param_type_name == "option", path


def test_shell_completion_works_offline(tmp_path):
    netlog = tmp_path / "net.log"
    script = cli("--show-completion", "bash", netlog=netlog)
    assert script.returncode == 0 and "_WILDTRAIN_COMPLETE=complete_bash" in script.stdout, script.stderr
    installed = cli("--install-completion", "bash", netlog=netlog, HOME=str(tmp_path))
    assert installed.returncode == 0, installed.stderr
    assert "wildtrain" in (tmp_path / ".bashrc").read_text()

    def complete(words: str) -> list[str]:
        """What bash would offer after `words`, from the installed `wildtrain` script."""
        env = {**pipeline_env(REPO, netlog), "_WILDTRAIN_COMPLETE": "complete_bash", "COMP_WORDS": words,
               "COMP_CWORD": str(len(words.split(" ")) - 1)}
        proc = subprocess.run([str(Path(sys.executable).parent / "wildtrain")], env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.split()

    assert complete("wildtrain export --to ") == ["stac", "dlpk", "onnx", "torchscript", "openvino", "card"]
    assert complete("wildtrain predict x --device c") == ["cpu", "cuda"]
    assert complete("wildtrain predict x --slice ") == ["auto", "off"]
    assert "models" in complete("wildtrain m")
    assert not netlog.exists() or netlog.read_text() == ""


@pytest.mark.slow
def test_models_lists_versions_aliases_and_the_gate_metric(tmp_path, monkeypatch):
    """Three versions registered by the real register_model on a sqlite store: v1 champion, v2 worse (challenger),
    v3 a clear gain (champion); the listing shows each with its aliases, gate metric, interval and gain."""
    import mlflow

    from gate_tables import hits
    from test_registry import model_folder, register

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.chdir(tmp_path)  # MLflow's sqlite store puts artifacts in ./mlruns
    mlflow.set_tracking_uri(store)
    mlflow.set_experiment("t")
    folder = model_folder(tmp_path)
    registered = []
    for found in (hits(20), hits(12), hits(36)):
        with mlflow.start_run() as run:
            pass
        registered.append(register(run.info.run_id, folder, found))

    shown = cli("models", "--json", cwd=tmp_path, MLFLOW_TRACKING_URI=store)
    assert shown.returncode == 0, shown.stderr
    listing = json.loads(shown.stdout)
    assert listing["tracking_uri"] == store and list(listing["models"]) == ["det"]
    versions = listing["models"]["det"]
    assert [(v["version"], v["aliases"], v["decision"]) for v in versions] == \
        [(3, ["challenger", "champion"], "champion"), (2, [], "challenger"), (1, [], "champion")]
    for v, out in zip(versions, reversed(registered)):
        assert v["gate_metric"] == "map50_95" and v["value"] == pytest.approx(out["gate_value"])
        assert v["delta"] == (None if out["delta"] is None else pytest.approx(out["delta"]))
        assert v["delta_ci95"] == (None if out["delta_ci95"] is None else pytest.approx(out["delta_ci95"]))
    assert versions[0]["delta_ci95"][0] > 0 and versions[1]["delta"] < 0

    table = cli("models", cwd=tmp_path, MLFLOW_TRACKING_URI=store)
    assert table.returncode == 0, table.stderr
    rows = {ln.split()[0]: ln for ln in table.stdout.splitlines() if ln.strip().startswith("v")}
    assert "challenger, champion" in rows["v3"] and "map50_95 " in rows["v3"] and "champion" in rows["v1"]
    assert f"{registered[2]['delta']:+.4f} [" in rows["v3"]

    assert_one_line_error(cli("models", "nope", cwd=tmp_path, MLFLOW_TRACKING_URI=store),
                          "no registered model 'nope'", "(registered: det)")
    missing = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    assert_one_line_error(cli("models", cwd=tmp_path, MLFLOW_TRACKING_URI=missing), "no MLflow store at")
    assert not (tmp_path / "elsewhere.db").exists()  # a listing never creates a store


def make(folder: Path, *args: str, answer: str | None = None) -> str:
    """`make ARGS` in `folder`: stdin a terminal that answers `answer`, or not a terminal (None)."""
    cmd = ["make", "--no-print-directory", *args]
    if answer is None:
        proc = subprocess.run(cmd, cwd=folder, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    else:
        main, tty = pty.openpty()
        os.write(main, (answer + "\n").encode())
        proc = subprocess.run(cmd, cwd=folder, stdin=tty, capture_output=True, text=True, timeout=60)
        os.close(main)
        os.close(tty)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout + proc.stderr


def test_make_clean_keeps_the_registry_and_clean_all_asks(tmp_path):
    shutil.copy2(REPO / "Makefile", tmp_path / "Makefile")

    def state():
        for d in ("runs/detector", "mlruns/1/abc/artifacts", "models"):
            (tmp_path / d).mkdir(parents=True, exist_ok=True)
        (tmp_path / "mlflow.db").write_bytes(b"registry")

    def registry() -> bool:
        return (tmp_path / "mlflow.db").exists() and (tmp_path / "mlruns/1/abc/artifacts").is_dir()

    state()
    make(tmp_path, "clean")
    assert registry() and not (tmp_path / "runs").exists() and not (tmp_path / "models").exists()
    assert "kept mlflow.db" in make(tmp_path, "clean-all") and registry()  # not a terminal: no
    assert "kept mlflow.db" in make(tmp_path, "clean-all", answer="") and registry()  # Enter: no
    assert "kept mlflow.db" in make(tmp_path, "clean-all", answer="n") and registry()
    said = make(tmp_path, "clean-all", answer="y")
    assert "[y/N]" in said and "deleted mlflow.db" in said and not registry() and not (tmp_path / "mlruns").exists()
    state()
    assert "deleted mlflow.db" in make(tmp_path, "clean-all", "YES=1") and not registry()
    help_text = make(tmp_path, "help")
    assert "clean-all" in help_text and "keeps the MLflow registry" in help_text
