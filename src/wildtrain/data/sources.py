"""Where a user's data comes from: a folder, or a .zip / .tar / .tar.gz archive unpacked safely aside.

Archive members with absolute paths or `..` (zip-slip), and links or devices in tars, are refused
before anything is written, so an archive can never write outside its scratch folder.
"""

from __future__ import annotations

import contextlib
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Iterator

from wildtrain.data.formats.base import unsafe_name
from wildtrain.errors import WildtrainError

ARCHIVES = (".zip", ".tar", ".tar.gz", ".tgz")


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


@contextlib.contextmanager
def open_source(source: Path) -> Iterator[Path]:
    """Yield a folder holding the data: the folder itself, or an archive's contents (one top folder unwrapped)."""
    if source.is_dir():
        yield source
        return
    if not (source.is_file() and is_archive(source)):
        raise WildtrainError(f"{source}: neither a folder nor a {'/'.join(ARCHIVES)} archive")
    with tempfile.TemporaryDirectory(prefix="wildtrain-source-") as tmp:
        extract(source, Path(tmp))
        entries = [p for p in Path(tmp).iterdir() if not p.name.startswith((".", "__MACOSX"))]
        yield entries[0] if len(entries) == 1 and entries[0].is_dir() else Path(tmp)
