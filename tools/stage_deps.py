"""dvc.yaml's code deps, generated: each stage depends on exactly the project files it runs.

Which project files a stage runs: every `wildtrain` module its script imports, transitively — also imports
inside functions, so a module that is imported only on some paths still counts (it can run). A stage's
command line names its family (`python stages/train.py detector`); `families.get` imports that family by name,
so its package is part of the closure too. A package all of whose modules a stage runs is named as its folder.

    python tools/stage_deps.py          # rewrite the src/ and stages/ lines of each stage's deps in dvc.yaml
    python tools/stage_deps.py --check  # exit 1, naming the stages, when dvc.yaml differs from the generated deps

Only those lines change (they lead each stage's `deps:` list, a new stage's too); data deps, comments and the
rest stay as written.
`make deps` runs it; tests/test_stage_deps.py fails when dvc.yaml is not what it generates.
"""

from __future__ import annotations

import ast
import functools
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"


def module_file(name: str) -> Path | None:
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@functools.lru_cache(maxsize=None)  # each file is read once however many stages run it
def _imports(path: Path) -> frozenset[str]:
    """Absolute module names a file imports (its own package's parents count: importing a.b runs a/__init__)."""
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}  # `from pkg import module`
    out = set()
    for name in names:
        parts = name.split(".")
        out |= {".".join(parts[:k]) for k in range(1, len(parts) + 1)}
    return frozenset(n for n in out if n == "wildtrain" or n.startswith("wildtrain."))


@functools.lru_cache(maxsize=None)
def _sibling_files(path: Path) -> frozenset[Path]:
    """Modules a file names as files beside it (`Path(__file__).with_name("serve.py")`): code it ships or has
    another program run (MLflow's model from code, the .dlpk's inference function), so it runs too."""
    tree = ast.parse(path.read_text(), str(path))
    names = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
             and n.value.endswith(".py") and "/" not in n.value}
    return frozenset(path.with_name(n) for n in names if path.with_name(n).is_file())


def closure(script: Path, extra_modules: list[str] = ()) -> set[Path]:
    """Project files run by `script` (and by the modules named in extra_modules)."""
    seen: set[Path] = set()
    todo = [script] + [f for f in map(module_file, extra_modules) if f]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            f = module_file(name)
            if f and f not in seen:
                todo.append(f)
        todo += [f for f in _sibling_files(path) if f not in seen]
    if (REPO / "stages" / "_stage.py").is_file() and script.parent.name == "stages":
        seen.add(REPO / "stages" / "_stage.py")
    return seen


def stage_files(cmd: str) -> set[Path]:
    """`python stages/x.py [family]` -> the files it runs."""
    words = cmd.split()
    script = REPO / words[1]
    extra = [f"wildtrain.families.{words[2]}"] if len(words) > 2 else []
    return closure(script, extra)


CODE_DEP = re.compile(r"^      - ((?:src|stages)/\S+)\s*$")  # a code dep line of a stage's deps list


def _collapse(files: set[Path]) -> list[str]:
    """Repo-relative deps: a package whose modules (subpackages included) are all in `files` as its folder."""
    out, covered = [], set()
    packages = sorted({f.parent for f in files if f.is_relative_to(SRC)}, key=lambda d: len(d.parts))
    for folder in packages:
        if folder in covered or folder == SRC / "wildtrain" or any(folder.is_relative_to(c) for c in covered):
            continue
        modules = {m for m in folder.rglob("*.py") if "__pycache__" not in m.parts}
        if modules and modules <= files:
            covered.add(folder)
    for f in files:
        if not any(f.is_relative_to(c) for c in covered):
            out.append(f)
    return sorted({str(p.relative_to(REPO)) for p in [*out, *covered]})


def generated(cmd: str) -> list[str]:
    """The code deps of a stage, by its command line."""
    return _collapse(stage_files(cmd))


def rewrite(text: str) -> tuple[str, list[str]]:
    """dvc.yaml's text with each stage's code deps generated; and the names of the stages whose deps changed."""
    import yaml

    stages = yaml.safe_load(text)["stages"]
    out, stage, in_deps = [], None, False
    for line in text.splitlines(keepends=True):
        name = re.match(r"^  ([A-Za-z0-9_-]+):\s*$", line)
        if name:
            stage, in_deps = name.group(1), False
        elif re.match(r"^    \S", line):  # a stage's key: deps, params, outs ...
            in_deps = line.strip() == "deps:"
            if in_deps:  # the code deps lead the list (a new stage gets them too)
                out += [line, *(f"      - {d}\n" for d in generated(stages[stage]["cmd"]))]
                continue
        if in_deps and CODE_DEP.match(line):
            continue
        out.append(line)
    new = "".join(out)
    after = yaml.safe_load(new)["stages"]
    return new, [s for s in stages if stages[s].get("deps") != after[s].get("deps")]


def main(argv: list[str]) -> int:
    path = REPO / "dvc.yaml"
    text = path.read_text()
    new, changed = rewrite(text)
    if "--check" in argv:
        if changed:
            print(f"dvc.yaml: the code deps of {', '.join(changed)} are not the generated ones (make deps)",
                  file=sys.stderr)
        return 1 if changed else 0
    if new != text:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(new)
        tmp.replace(path)  # atomic: dvc never reads half a file
    print(f"dvc.yaml: code deps generated; {'changed: ' + ', '.join(changed) if changed else 'unchanged'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
