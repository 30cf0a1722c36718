"""Which project files a stage runs: every `wildtrain` module its script imports, transitively — also imports
inside functions, so a module that is imported only on some paths still counts (it can run). A stage's
command line names its family (`python stages/train.py detector`); `families.get` imports that family by name,
so its package is part of the closure too."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"


def module_file(name: str) -> Path | None:
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> set[str]:
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
    return {n for n in out if n == "wildtrain" or n.startswith("wildtrain.")}


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
    if (REPO / "stages" / "_stage.py").is_file() and script.parent.name == "stages":
        seen.add(REPO / "stages" / "_stage.py")
    return seen


def stage_files(cmd: str) -> set[Path]:
    """`python stages/x.py [family]` -> the files it runs."""
    words = cmd.split()
    script = REPO / words[1]
    extra = [f"wildtrain.families.{words[2]}"] if len(words) > 2 else []
    return closure(script, extra)
