"""Atomic writes and safe loads: a crash mid-write leaves the previous file or none, never half a file."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import orjson
import yaml

from wildtrain.errors import WildtrainError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def write_torch(path: str | os.PathLike, obj: Any) -> None:
    """torch.save, atomically and reproducibly: torch names the archive's root folder after the file, and a temp
    file's random name would make the same weights give other bytes."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getvalue())


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def write_yaml(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, yaml.safe_dump(obj, sort_keys=False))


def copy_file(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def link_or_copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Hard-link src to dst (no bytes copied, never re-encoded); copy where links are impossible."""
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many acyclic containers (a parsed COCO file).

    With it on, each collection rescans every live container, so parsing 200k annotations took 2-5x
    the parse itself. On exit, freeze+unfreeze files what was built straight into the oldest generation
    (CPython's documented gc.freeze/unfreeze pair) instead of leaving it young, where the next few
    collections would each walk all of it once more. Nothing is leaked: refcounting frees it as usual,
    and full collections still look at it.
    """
    was_enabled, frozen_by_caller = gc.isenabled(), gc.get_freeze_count() > 0
    gc.disable()
    try:
        yield
    finally:
        if not frozen_by_caller:  # never thaw objects someone froze on purpose (e.g. before a fork)
            gc.freeze()
            gc.unfreeze()
        if was_enabled:
            gc.enable()


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    path = Path(path)
    if not path.is_file():
        raise WildtrainError(f"{path}: {what} not found")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise WildtrainError(f"{path}: unreadable {what} ({e})") from None
    with gc_paused() if len(data) > 1 << 20 else contextlib.nullcontext():  # big files: many containers
        try:  # orjson is the faster parser; it refuses NaN/Infinity, which json reads and validation reports
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
        try:
            return json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise WildtrainError(f"{path}: unreadable {what} ({e})") from None


def read_yaml(path: str | os.PathLike, what: str = "YAML file") -> Any:
    path = Path(path)
    if not path.is_file():
        raise WildtrainError(f"{path}: {what} not found")
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        msg = str(e).replace("\n", " ")
        raise WildtrainError(f"{path}: unreadable {what} ({msg})") from None


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def replaced_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Build a directory in a temp sibling and swap it in at the end, so readers never see half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
