"""The documentation site builds with `mkdocs build --strict` (a broken link, a missing anchor or a page left out of
the nav fails it), and its generated references are complete: every command of the Typer app, every key of every
params section and every documented make target appears, so a command or param added to the code reaches the docs
without anyone copying it. The README stays a short front page."""

from __future__ import annotations

import dataclasses
import html
import os
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                           str(REPO / "mkdocs.yml"), "--site-dir", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stderr[-4000:]}"
    return out


def page_text(site: Path, page: str) -> str:
    return html.unescape((site / page / "index.html").read_text())


def command_paths(cmd, path: tuple[str, ...]) -> list[str]:
    found = [" ".join(path)]
    for name, sub in sorted((getattr(cmd, "commands", None) or {}).items()):
        if not getattr(sub, "hidden", False):
            found += command_paths(sub, path + (name,))
    return found


def param_keys(cls: type, prefix: str) -> list[str]:
    hints = typing.get_type_hints(cls)
    keys = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}"
        keys += param_keys(hints[f.name], key) if dataclasses.is_dataclass(hints[f.name]) else [key]
    return keys


def test_cli_reference_has_every_command_and_option(site):
    import typer.main

    from wildtrain.cli import app

    text = page_text(site, "reference/cli")
    root = typer.main.get_command(app)
    paths = command_paths(root, ("wildtrain",))
    assert len(paths) > 10
    missing = [p for p in paths if not re.search(rf"<h[1-6][^>]*><code>{re.escape(p)}</code>", text)]
    assert not missing, f"docs/reference/cli.md has no section for the commands {missing}"
    predict = root.commands["predict"]
    for param in predict.params:
        for opt in getattr(param, "opts", []):
            if opt.startswith("--"):
                assert opt in text, f"the CLI reference lacks `wildtrain predict {opt}`"


def test_params_reference_has_every_section_and_key(site):
    from wildtrain import params

    text = page_text(site, "reference/params")
    hints = typing.get_type_hints(params.Params)
    sections = [f.name for f in dataclasses.fields(params.Params)]
    assert {"data", "train", "classifier", "segmenter", "predict"} <= set(sections)
    for section in sections:
        assert f'id="{section}"' in text, f"docs/reference/params.md has no section '{section}'"
        if dataclasses.is_dataclass(hints[section]):
            missing = [k for k in param_keys(hints[section], section) if f"<code>{k}</code>" not in text]
            assert not missing, f"the params reference lacks {missing}"


def test_params_reference_shows_the_project_value_where_it_differs(site):
    from wildtrain import params

    project = yaml.safe_load((REPO / "params.yaml").read_text())
    default = params.Train().epochs
    text = page_text(site, "reference/params")
    row = re.search(r"<code>train\.epochs</code>.*?</tr>", text, re.S)
    assert row, "no row for train.epochs"
    if project["train"]["epochs"] != default:
        assert f"<code>{project['train']['epochs']}</code>" in row.group(0)


def test_make_reference_has_every_documented_target(site):
    text = page_text(site, "reference/make")
    targets = re.findall(r"^([a-zA-Z_-]+):.*?## ", (REPO / "Makefile").read_text(), re.M)
    assert {"repro", "test", "docs", "predict"} <= set(targets)
    missing = [t for t in targets if f"<code>make {t}</code>" not in text]
    assert not missing, f"docs/reference/make.md lacks {missing}"


def nav_files(nav) -> list[str]:
    files = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        files += nav_files(value) if isinstance(value, list) else [value]
    return files


def test_nav_has_the_four_kinds_and_the_required_pages():
    config = yaml.load((REPO / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)  # plain data, no tags
    titles = [next(iter(e)) for e in config["nav"] if isinstance(e, dict)]
    assert {"Getting started", "Tutorials", "How-to", "Reference", "Explanation"} <= set(titles)
    files = nav_files(config["nav"])
    for page in ("explanation/adding-a-model-family.md", "how-to/python-api.md", "explanation/comparing-runs.md",
                 "reference/cli.md", "reference/params.md", "tutorials/your-own-data.md", "tutorials/census.md",
                 "tutorials/two-stage.md", "tutorials/segmenter.md", "tutorials/publishing.md", "tutorials/team.md"):
        assert page in files, f"mkdocs.yml nav lacks {page}"


HISTORY = re.compile(r"earlier session|this session|in that session|slower host|stop \d+|previous default|"
                     r"before this version|the old default|this round of work|earlier baselines", re.I)


def test_user_docs_tell_no_history_of_how_the_project_was_built():
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    found = [f"{p.relative_to(REPO)}: {m.group(0)!r}" for p in pages for m in HISTORY.finditer(p.read_text())]
    assert not found, f"user docs tell the project's history: {found}"


def test_readme_is_a_short_front_page_with_the_two_commands():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    first_block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()]
    assert [c for c in commands if c.startswith("make ")] == ["make repro", "make test"]
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (REPO / link).exists(), f"README links to {link}, which does not exist"
