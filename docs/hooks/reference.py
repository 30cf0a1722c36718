"""mkdocs hook: the CLI and params references, generated at build time from the code itself (the Typer app in
wildtrain.cli, the dataclasses in wildtrain.params and the project's params.yaml), so no hand-kept copy drifts
from what `wildtrain --help` and params validation say."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import json
import re
import sys
import textwrap
import tokenize
import types
import typing
from pathlib import Path

PAGES = {"reference/cli.md": "cli_markdown", "reference/params.md": "params_markdown",
         "reference/make.md": "make_markdown"}


def _repo(config) -> Path:
    return Path(config.config_file_path).resolve().parent


def _import_src(repo: Path) -> None:
    """This checkout's src/ first, so a worktree documents its own code, not an installed copy."""
    src = str(repo / "src")
    if src not in sys.path:
        sys.path.insert(0, src)


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


# ---- CLI ------------------------------------------------------------------------------------------------------


def _param_row(p, ctx) -> str | None:
    record = p.get_help_record(ctx)
    if record is None:  # hidden
        return None
    names, text = record
    kind = "argument" if p.param_type_name == "argument" else ("flag" if getattr(p, "is_flag", False) else "option")
    return f"| `{_cell(names)}` | {kind} | {_cell(text)} |"


def _walk(cmd, path: list[str], parent, out: list[str]) -> None:
    ctx = cmd.context_class(cmd, info_name=path[-1], parent=parent)
    out.append(f"{'#' * min(len(path) + 1, 6)} `{' '.join(path)}`\n")
    doc = inspect.cleandoc(cmd.help or "")
    if doc:
        out.append(doc + "\n")
    out.append(f"```\n{cmd.get_usage(ctx).strip()}\n```\n")
    rows = [r for r in (_param_row(p, ctx) for p in cmd.get_params(ctx)) if r]
    if rows:
        out.append("| name | kind | help |\n|---|---|---|")
        out.extend(rows)
        out.append("")
    subs = getattr(cmd, "commands", None) or {}
    if subs:
        out.append("Commands: " + ", ".join(f"`{' '.join(path)} {n}`" for n in sorted(subs)
                                            if not getattr(subs[n], "hidden", False)) + ".\n")
    for name in sorted(subs):
        if not getattr(subs[name], "hidden", False):
            _walk(subs[name], path + [name], ctx, out)


def cli_command():
    import typer.main

    from wildtrain.cli import app

    return typer.main.get_command(app)


def command_paths(cmd=None, path: tuple[str, ...] = ("wildtrain",)) -> list[str]:
    """Every visible command and sub-command, as `wildtrain data add` strings (the test checks the page has each)."""
    cmd = cmd or cli_command()
    found = [" ".join(path)]
    for name, sub in sorted((getattr(cmd, "commands", None) or {}).items()):
        if not getattr(sub, "hidden", False):
            found += command_paths(sub, path + (name,))
    return found


def cli_markdown(repo: Path) -> str:
    out = ["# CLI reference\n",
           "Generated from the Typer app (`src/wildtrain/cli.py`) when the site is built: it is what "
           "`wildtrain COMMAND --help` prints. Every command exits 0 on success and 2 on an error, with one "
           "`error:` line; `wildtrain predict` exits 3 when some images were skipped.\n"]
    _walk(cli_command(), ["wildtrain"], None, out)
    return "\n".join(out) + "\n"


# ---- params -----------------------------------------------------------------------------------------------------


def _comments(cls: type) -> dict[str, str]:
    """Field name -> its trailing `# comment` in the class body (the code's own words), for cls and its bases."""
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            lines, _ = inspect.getsourcelines(klass)
        except (OSError, TypeError):
            continue
        source = textwrap.dedent("".join(lines))
        by_line = {tok.start[0]: tok.string.lstrip("#").strip()
                   for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
        for node in ast.parse(source).body[0].body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.lineno in by_line:
                found[node.target.id] = by_line[node.lineno]
    return found


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is not None:
        args = ", ".join(_type_name(a).strip("`") for a in typing.get_args(tp))
        return f"`{getattr(origin, '__name__', str(origin))}[{args}]`"
    return f"`{getattr(tp, '__name__', str(tp))}`"


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _value(v) -> str:
    if v is dataclasses.MISSING:
        return "required"
    if dataclasses.is_dataclass(v):
        v = dataclasses.asdict(v)
    return f"`{json.dumps(v, default=str)}`"


def _class_doc(cls: type) -> str:
    doc = inspect.getdoc(cls) or ""
    return "" if doc.startswith(cls.__name__ + "(") else doc  # dataclasses make up a signature when there is none


def _rows(cls: type, prefix: str, project: dict, out: list[str]) -> None:
    hints = typing.get_type_hints(cls)
    notes = _comments(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}"
        default = _default(f)
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            sub_doc = _class_doc(tp)
            if notes.get(f.name) or sub_doc:
                out.append(f"| `{key}` | section | | | {_cell(notes.get(f.name) or sub_doc)} |")
            _rows(tp, key, project.get(f.name, {}) if isinstance(project, dict) else {}, out)
            continue
        here = project.get(f.name, dataclasses.MISSING) if isinstance(project, dict) else dataclasses.MISSING
        shown = "" if here is dataclasses.MISSING or here == default else _value(here)
        out.append(f"| `{key}` | {_type_name(tp)} | {_value(default)} | {shown} | {_cell(notes.get(f.name, ''))} |")


# Where each section's behaviour is explained (a section missing here simply gets no link).
GUIDES = {
    "data": [("Train on your own data", "../tutorials/your-own-data.md"), ("Data formats and validation", "data.md"),
             ("Streaming from shards", "../explanation/streaming.md")],
    "convert": [("Splits, tiling, shards and crops", "data.md#splits-groups-and-statistics-convert")],
    "train": [("The detector recipe", "../explanation/detector-recipe.md"),
              ("Train in phases", "../how-to/phases-and-hard-negatives.md"), ("MMDetection", "../how-to/mmdetection.md"),
              ("GPUs", "../how-to/gpus.md")],
    "evaluate": [("Comparing runs", "../explanation/comparing-runs.md")],
    "register": [("Runs and the model registry", "../how-to/runs-and-registry.md"),
                 ("Publishing", "../tutorials/publishing.md")],
    "tracking": [("Runs and the model registry", "../how-to/runs-and-registry.md")],
    "tune": [("Search hyperparameters", "../how-to/tune.md")],
    "rebalance": [("The species classifier", "../tutorials/two-stage.md#the-species-classifier")],
    "classifier": [("The species classifier", "../tutorials/two-stage.md#the-species-classifier")],
    "classifier_evaluate": [("The species classifier", "../tutorials/two-stage.md#the-species-classifier")],
    "classifier_register": [("Runs and the model registry", "../how-to/runs-and-registry.md")],
    "two_stage": [("The two-stage model", "../tutorials/two-stage.md")],
    "segmenter": [("The semantic segmenter", "../tutorials/segmenter.md")],
    "segmenter_evaluate": [("The semantic segmenter", "../tutorials/segmenter.md")],
    "segmenter_register": [("The semantic segmenter", "../tutorials/segmenter.md")],
    "predict": [("Predict on your images", "../how-to/predict.md")],
}


def params_sections() -> list[str]:
    from wildtrain import params

    return [f.name for f in dataclasses.fields(params.Params)]


def params_markdown(repo: Path) -> str:
    import yaml

    from wildtrain import params

    project = yaml.safe_load((repo / "params.yaml").read_text()) or {}
    hints = typing.get_type_hints(params.Params)
    notes = _comments(params.Params)
    out = ["# Params reference (`params.yaml`)\n",
           "Generated from `src/wildtrain/params.py` when the site is built. Every key of `params.yaml`, its type, "
           "the built-in default, the value this project's `params.yaml` sets where it differs, and the code's own "
           "note. An unknown key or a value of the wrong type is refused in one line naming the key. Each DVC stage "
           "depends only on its own sections (`dvc.yaml`), so changing a key reruns exactly the stages that read "
           "it (`dvc exp run -S section.key=value`).\n",
           "Sections: " + ", ".join(f"[`{s}`](#{s})" for s in params_sections()) + ".\n"]
    for f in dataclasses.fields(params.Params):
        cls = hints[f.name]
        out.append(f"## {f.name}\n")
        doc = notes.get(f.name) or (_class_doc(cls) if dataclasses.is_dataclass(cls) else "")
        if doc:
            out.append(doc + "\n")
        if f.name in GUIDES:
            out.append("See " + ", ".join(f"[{title}]({link})" for title, link in GUIDES[f.name]) + ".\n")
        if not dataclasses.is_dataclass(cls):
            out.append(f"Type {_type_name(cls)}, default {_value(_default(f))}.\n")
            continue
        out.append("| key | type | default | params.yaml | note |\n|---|---|---|---|---|")
        _rows(cls, f.name, project.get(f.name, {}), out)
        out.append("")
    return "\n".join(out) + "\n"


# ---- make targets -------------------------------------------------------------------------------------------------


def make_targets(repo: Path) -> list[tuple[str, str]]:
    """(target, help) of every Makefile target with a `## help` comment: what `make help` lists."""
    found = []
    for line in (repo / "Makefile").read_text().splitlines():
        m = re.match(r"^([a-zA-Z_-]+):.*?## (.*)$", line)
        if m:
            found.append((m.group(1), m.group(2).strip()))
    return found


def make_markdown(repo: Path) -> str:
    out = ["# Make targets\n",
           "Generated from the `Makefile` when the site is built: what `make help` lists. The targets that run the "
           "project's tools create `.venv` first when it is missing, so none needs an activated environment. "
           "Variables go on the command line: `make predict SRC=survey/ OUT=counts/`.\n",
           "| target | what it does |\n|---|---|"]
    out += [f"| `make {t}` | {_cell(h)} |" for t, h in make_targets(repo)]
    return "\n".join(out) + "\n"


# ---- mkdocs events ------------------------------------------------------------------------------------------------


def on_files(files, config):
    from mkdocs.structure.files import File

    repo = _repo(config)
    _import_src(repo)
    for uri, builder in PAGES.items():
        existing = files.get_file_from_path(uri)
        if existing is not None:
            files.remove(existing)
        files.append(File.generated(config, uri, content=globals()[builder](repo)))
    return files
