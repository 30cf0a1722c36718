"""`wildtrain data add`: bring a user's dataset under DVC, so the pipeline depends on it and DVC stores it.

The folder (or an archive's contents) is copied to `data/source/<name>`, `dvc add`-ed, and `data.source`
in params.yaml is pointed at it with the file's comments kept. dvc.yaml's prepare stage depends on
`data/source`, so any later change to the source's files reruns prepare; `dvc push` stores it remotely.
"""

from __future__ import annotations

import filecmp
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from wildtrain.data.sources import ARCHIVES, SOURCE_DIR, is_archive, unpack, versioning
from wildtrain.errors import WildtrainError
from wildtrain.io import atomic_path, write_text

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # one folder name: no '/', no '..', not absolute
SKIP = (".git", ".dvc")  # another repository's metadata is not data


def source_name(path: Path, name: str | None) -> str:
    """`--name`, or the folder's / archive's name without its extension; refused unless one safe folder name."""
    if name is None:
        name = path.resolve().name
        for ext in sorted(ARCHIVES, key=len, reverse=True):
            if path.is_file() and name.lower().endswith(ext):
                name = name[: -len(ext)]
                break
    if not NAME.fullmatch(name) or ".." in name:
        raise WildtrainError(f"source name '{name}': use one folder name of letters, digits, '.', '_' or '-' "
                             f"(no '/', '..' or absolute path); pass --name")
    return name


def _files(root: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP)
        out += [os.path.relpath(os.path.join(dirpath, f), root) for f in sorted(filenames)]
    return out


def same_tree(a: Path, b: Path) -> bool:
    """Same relative file names with the same bytes (what `dvc add` would hash the same)."""
    if not (a.is_dir() and b.is_dir()):
        return False
    names = _files(a)
    return names == _files(b) and all(filecmp.cmp(a / n, b / n, shallow=False) for n in names)


def _bring(src: Path, dest: Path, root: Path, force: bool) -> bool:
    """Copy (or unpack) src into dest via a staging folder (so dest is never half-written); False when dest
    already holds the same files."""
    staging = Path(tempfile.mkdtemp(prefix=".source-", suffix=".tmp", dir=root / "data"))
    try:
        if src.is_dir():
            data = staging / "new"
            shutil.copytree(src, data, ignore=shutil.ignore_patterns(*SKIP))
        else:
            (staging / "new").mkdir()
            data = unpack(src, staging / "new")
        if dest.exists():
            if same_tree(data, dest):
                return False
            if not force:
                raise WildtrainError(f"{dest.relative_to(root)} already holds a different dataset; choose another "
                                     f"--name, or pass --force to replace it (the old version stays in DVC's cache "
                                     f"and git history)")
            os.replace(dest, staging / "old")
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(data, dest)
        return True
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def dvc_add(root: Path, rel: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "dvc", "add", rel], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ERROR")] or lines[-1:] or [f"exit code {proc.returncode}"]
        raise WildtrainError(f"dvc add {rel} failed: {errors[0].removeprefix('ERROR:').strip()}")


def set_source(params_file: Path, value: str) -> None:
    """Set data.source in params.yaml, keeping its comments and layout (ruamel round trip, atomic write)."""
    from ruamel.yaml import YAML

    from wildtrain.params import load

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap long lines
    doc = yaml.load(params_file.read_text(encoding="utf-8")) if params_file.is_file() else None
    if doc is None:
        doc = {}
    doc.setdefault("data", {})["source"] = value
    buf = io.StringIO()
    yaml.dump(doc, buf)
    with atomic_path(params_file) as tmp:
        write_text(tmp, buf.getvalue())
        load(tmp)  # refuse to write a params file the pipeline would not read


def add(path: str, name: str | None, root: Path, force: bool = False) -> dict:
    """Version `path` as data/source/<name> and make it the pipeline's source; returns what was done."""
    src = Path(path)
    if not src.exists():
        raise WildtrainError(f"{path}: no such folder or archive")
    if not (src.is_dir() or (src.is_file() and is_archive(src))):
        raise WildtrainError(f"{path}: neither a folder nor a {'/'.join(ARCHIVES)} archive")
    if not (root / ".dvc").is_dir():
        raise WildtrainError(f"{root}: not a DVC repository (no .dvc folder); run this in the wildtrain repository")
    name = source_name(src, name)
    rel = f"{SOURCE_DIR}/{name}"
    dest = root / rel
    how = "in place"  # the files were already put there: version them where they are
    if src.resolve() != dest.resolve():
        if dest.resolve().is_relative_to(src.resolve()) or src.resolve().is_relative_to(dest.resolve()):
            raise WildtrainError(f"{path}: contains or lies inside {rel}; copy it elsewhere first or pick another --name")
        how = f"copied from {path}" if _bring(src, dest, root, force) else "same files as already there"
    dvc_add(root, rel)
    set_source(root / "params.yaml", rel)
    v = versioning(dest, root)
    return {"source": rel, "md5": v.get("md5"), "dvc_file": v.get("dvc_file"), "how": how}
