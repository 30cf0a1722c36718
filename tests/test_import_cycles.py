"""No import loops among wildtrain's modules, nor among its top-level parts (wildtrain.evaluate, wildtrain.families,
...): each layer depends on the ones below it (the shared contract, wildtrain.contract, at the bottom), so a module
can be read, tested and moved without the modules that use it. Read statically from src/ (imports inside functions
count: they run too)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def modules(src: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under src (a package is its __init__.py)."""
    out = {}
    for f in sorted(src.rglob("*.py")):
        parts = list(f.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules a module names in its imports: `from a.b import c` is a.b.c when that is a module,
    else a.b; relative imports resolved against its package."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([module] if module else []))
            found |= {f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names}
    return {m for m in found if m in known and m != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan's algorithm, iterative)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def module_graph(src: Path) -> dict[str, set[str]]:
    known = modules(src)
    return {name: imports(name, path, known) for name, path in known.items()}


def part_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The same imports between top-level parts: wildtrain.evaluate.detection -> wildtrain.evaluate."""
    def part(name: str) -> str:
        return ".".join(name.split(".")[:2])

    out: dict[str, set[str]] = {}
    for name, deps in graph.items():
        out.setdefault(part(name), set()).update(part(d) for d in deps if part(d) != part(name))
    return out


def test_no_import_cycle_among_wildtrain_modules():
    found = cycles(module_graph(SRC))
    assert not found, f"import cycles among modules: {found}"


def test_no_import_cycle_among_wildtrain_parts():
    found = cycles(part_graph(module_graph(SRC)))
    assert not found, f"import cycles among wildtrain's parts: {found}"


def test_the_contract_is_imported_by_evaluation_slicing_publishing_and_serving_not_the_families():
    graph = module_graph(SRC)
    users = {n for n in graph if n.startswith(("wildtrain.evaluate", "wildtrain.publish", "wildtrain.prediction"))
             or n in ("wildtrain.slicing", "wildtrain.serve")}
    assert "wildtrain.contract" in set().union(*(graph[n] for n in users))
    assert not {(n, d) for n in users for d in graph[n] if d.startswith("wildtrain.families")} - {
        ("wildtrain.serve", "wildtrain.families")}  # serve loads a model folder by its family's name


def test_a_cycle_is_found_also_through_a_relative_import_inside_a_function(tmp_path):
    pkg = tmp_path / "wildtrain"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from wildtrain.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from .. import c\n")
    (pkg / "c.py").write_text("import wildtrain.a\n")
    (pkg / "d.py").write_text("from wildtrain import a\n")
    graph = module_graph(tmp_path)
    assert cycles(graph) == [["wildtrain.a", "wildtrain.c", "wildtrain.sub.b"]]
    assert cycles(part_graph(graph)) == [["wildtrain.a", "wildtrain.c", "wildtrain.sub"]]
