"""Images to predict, wherever they are: an image, a folder (recursive), a .zip/.tar(.gz) archive, or a text file
listing paths. Each is read into an RGB array as displayed; a GeoTIFF keeps its georeferencing. A file that
cannot be read is reported (name and reason) and skipped — the rest is predicted."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from wildtrain.data.sources import is_archive, open_source
from wildtrain.errors import WildtrainError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
LIST_SUFFIXES = (".txt", ".lst")


@dataclass(frozen=True)
class Geo:
    """Pixel -> map coordinates of a georeferenced image (rasterio's affine transform) and its CRS."""

    transform: tuple[float, ...]  # a, b, c, d, e, f of x_map = a*col + b*row + c, y_map = d*col + e*row + f
    crs: str  # WKT or "EPSG:n"

    def to_map(self, x: float, y: float) -> tuple[float, float]:
        a, b, c, d, e, f = self.transform[:6]
        return a * x + b * y + c, d * x + e * y + f


@dataclass(frozen=True)
class Item:
    name: str  # as shown in every output: the path as given, or relative to the folder/archive/list
    path: Path


@contextlib.contextmanager
def items(source: Path) -> Iterator[list[Item]]:
    """The images of a source, sorted by name (archives are unpacked safely into a temporary folder)."""
    if not source.exists():
        raise WildtrainError(f"{source}: no such file or folder")
    if source.is_dir():
        yield _folder(source)
    elif is_archive(source):
        with open_source(source) as folder:  # unpacked safely aside, one top folder unwrapped
            yield [Item(f"{source.name}/{i.name}", i.path) for i in _folder(folder)]
    elif source.suffix.lower() in LIST_SUFFIXES:
        yield _listed(source)
    else:
        yield [Item(str(source), source)]


def _folder(folder: Path) -> list[Item]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    return [Item(f.relative_to(folder).as_posix(), f) for f in files]


def _listed(listing: Path) -> list[Item]:
    """One path per line (relative to the list's folder); blank lines and # comments ignored."""
    out = []
    for line in listing.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            path = Path(line) if Path(line).is_absolute() else listing.parent / line
            out.append(Item(line, path))
    return out


def _geotiff(path: Path) -> tuple[np.ndarray, Geo] | None:
    """A georeferenced TIFF through rasterio (bands 1-3, or 1 as grey); None when it carries no georeferencing."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                if src.crs is None or src.transform.is_identity:
                    return None
                bands = [1, 2, 3] if src.count >= 3 else [1, 1, 1]
                pixels = np.moveaxis(src.read(bands), 0, -1)
                geo = Geo(tuple(src.transform)[:6], src.crs.to_string())
    except RasterioIOError:
        return None  # not something GDAL reads as a raster: let PIL say why
    if pixels.dtype != np.uint8:  # 16-bit and float rasters scaled to 8 bits by their range, not clipped
        top = float(pixels.max()) or 1.0
        pixels = np.clip(np.round(pixels.astype(np.float64) * 255.0 / top), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(pixels), geo


class Unreadable(ValueError):
    """A file that is not an image any reader here can decode; the message is one line saying why."""


def reason(error: BaseException) -> str:
    """One line saying why a file could not be read."""
    text = str(error).splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def read(item: Item) -> tuple[np.ndarray, Geo | None]:
    """(RGB array, georeferencing or None); Unreadable with a one-line reason, whatever the reading library
    raised (Ultralytics' patched PIL.Image.open raises ModuleNotFoundError for a file that is no image)."""
    from wildtrain.data.images import load_rgb

    try:
        if item.path.suffix.lower() in (".tif", ".tiff"):
            geo = _geotiff(item.path)
            if geo is not None:
                return geo
        return load_rgb(item.path), None
    except Exception as e:  # noqa: BLE001 — PIL, its plugins, GDAL, numpy: any of them may fail on a bad file
        raise Unreadable(f"not a readable image ({reason(e)})") from None
