"""Where a user's data comes from: a folder, or a .zip / .tar / .tar.gz archive unpacked safely aside,
and whether DVC versions it (a `.dvc` file under `data/source/`, which the prepare stage depends on).

Archive members with absolute paths or `..` (zip-slip), and links or devices in tars, are refused
before anything is written, so an archive can never write outside its scratch folder.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Iterator

from wildtrain.data.formats.base import unsafe_name
from wildtrain.errors import WildtrainError
from wildtrain.io import read_yaml

ARCHIVES = (".zip", ".tar", ".tar.gz", ".tgz")
SOURCE_DIR = "data/source"  # versioned sources live here; dvc.yaml's prepare depends on this folder


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVES)


def _refuse(archive: Path, member: str, why: str) -> None:
    raise WildtrainError(f"{archive}: archive member '{member}' {why}; refused")


def extract(archive: Path, dest: Path) -> None:
    """Unpack after checking every member name; tars go through Python's 'data' filter as well."""
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    if unsafe_name(info.filename):
                        _refuse(archive, info.filename, "has an absolute path or '..'")
                    if (info.external_attr >> 16) & 0o170000 == 0o120000:
                        _refuse(archive, info.filename, "is a symbolic link")
                zf.extractall(dest)
        else:
            with tarfile.open(archive) as tf:
                members = tf.getmembers()
                for m in members:
                    if unsafe_name(m.name):
                        _refuse(archive, m.name, "has an absolute path or '..'")
                    if not (m.isfile() or m.isdir()):
                        _refuse(archive, m.name, "is a link or special file")
                tf.extractall(dest, members=members, filter="data")
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as e:
        raise WildtrainError(f"{archive}: unreadable archive ({e})") from None


def unpack(archive: Path, dest: Path) -> Path:
    """Extract into dest; the folder holding the data (dest, or its one top folder when that is all there is)."""
    extract(archive, dest)
    entries = [p for p in dest.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else dest


@contextlib.contextmanager
def open_source(source: Path) -> Iterator[Path]:
    """Yield a folder holding the data: the folder itself, or an archive's contents (one top folder unwrapped)."""
    if source.is_dir():
        yield source
        return
    if not (source.is_file() and is_archive(source)):
        raise WildtrainError(f"{source}: neither a folder nor a {'/'.join(ARCHIVES)} archive")
    with tempfile.TemporaryDirectory(prefix="wildtrain-source-") as tmp:
        yield unpack(source, Path(tmp))


def _dvc_out(dvc_file: Path, name: str) -> dict | None:
    """The `outs` entry of a .dvc file for `name` (a path relative to the .dvc file's folder)."""
    doc = read_yaml(dvc_file, "DVC file")
    outs = doc.get("outs") if isinstance(doc, dict) else None
    for out in outs if isinstance(outs, list) else []:
        if isinstance(out, dict) and out.get("path") == name:
            return out
    return None


def _ignored(root: Path) -> list[str]:
    """The repo's .dvcignore patterns: DVC leaves matching files out of a folder's hash and counts."""
    f = root / ".dvcignore"
    lines = f.read_text(encoding="utf-8", errors="replace").splitlines() if f.is_file() else []
    return [ln.strip().strip("/") for ln in lines if ln.strip() and not ln.startswith(("#", "!"))]


def _tree_size(path: Path, ignore: list[str]) -> tuple[int, int]:
    """(files, bytes) as DVC counts them in a .dvc file (`nfiles`, `size`); a single file counts as 1."""
    if path.is_file():
        return 1, path.stat().st_size
    files = total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = [d for d in dirnames if d not in (".git", ".dvc")
                       and not any(fnmatch.fnmatch(d, p) for p in ignore)]
        for f in filenames:
            if not any(fnmatch.fnmatch(f, p) for p in ignore):
                files += 1
                total += os.path.getsize(os.path.join(dirpath, f))
    return files, total


def versioning(source: Path, root: Path) -> dict:
    """Whether DVC versions a source: {md5, dvc_file, stale} when it does, {unversioned: why} when not.

    Versioned means inside `data/source/` (prepare depends on that folder, so it reruns when the source
    changes) and tracked by a `.dvc` file (so DVC stores, pushes and restores it). `stale`: the folder's
    file count or size differ from its .dvc file, i.e. it was edited after `dvc add` and prepare runs
    outside `dvc repro` (which re-adds changed sources before prepare).
    """
    root, source = root.resolve(), source.resolve()
    if not source.is_relative_to(root):
        return {"unversioned": "outside the repository: DVC neither reruns prepare when it changes nor stores it"}
    rel = source.relative_to(root)
    if not rel.is_relative_to(SOURCE_DIR) or rel == Path(SOURCE_DIR):
        return {"unversioned": f"outside {SOURCE_DIR}/: DVC neither reruns prepare when it changes nor stores it"}
    for tracked in (rel, *rel.parents):  # the source's own .dvc file, or one of a folder above it
        if tracked == Path(SOURCE_DIR):
            break
        dvc_file = tracked.parent / f"{tracked.name}.dvc"
        if (root / dvc_file).is_file():
            out = _dvc_out(root / dvc_file, tracked.name)
            if out is None or not out.get("md5"):
                raise WildtrainError(f"{dvc_file}: no hash for '{tracked.name}' (run: dvc add {tracked.as_posix()})")
            stale = (out.get("nfiles", 1), out.get("size")) != _tree_size(root / tracked, _ignored(root))
            return {"md5": out["md5"], "dvc_file": dvc_file.as_posix(), "stale": stale}
    return {"unversioned": "no .dvc file: DVC reruns prepare when it changes but cannot store or restore it"}
