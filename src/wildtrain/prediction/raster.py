"""Large rasters (GeoTIFF, BigTIFF, COG) predicted window by window, in bounded memory.

The raster is never read whole: it is read in chunks aligned to its own tiling (`block_shapes`: a COG's 512 px
tiles are decoded once each), and the model's windows are cut from the chunk they start in. GDAL's block cache is
capped (GDAL_CACHE_MB), so memory depends on the chunk and window sizes, not on the raster's.

Pixels outside the survey footprint — nodata, alpha 0, the padding around an orthomosaic (`read_masks`) — are
not predicted: a window with no valid pixel is skipped, and a box whose centre lies on an invalid pixel is dropped.
The valid pixels are counted (the area surveyed) and a coarse copy of the mask gives the footprint polygon.

Detections: the windows' boxes are merged as in wildtrain.slicing (each window limited to max_det, the total not).
Segmentation: each window row's class probabilities are blended into a strip as wide as the raster and one window
high (no full-size accumulator); rows that no later window touches are written to a tiled GeoTIFF and dropped.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from wildtrain.data.tiling import windows
from wildtrain.contract import Detections
from wildtrain.prediction.sources import Geo, Item
from wildtrain.slicing import blend_weight, merge

CHUNK = 4096  # px per side of a read, rounded to the raster's blocks (plus the windows that start in it)
GDAL_CACHE_MB = 256  # GDAL's block cache (its default is 5% of the machine's RAM)
STREAM_PIXELS = 64_000_000  # TIFFs without georeferencing are streamed above this size (PIL reads smaller ones)
PREVIEW = 2048  # long side of the coarse copy that holds the footprint mask (and the --draw picture)
NODATA_CLASS = 255  # value of the segmenter's class map outside the footprint


class Unreadable(Exception):
    """The raster's pixels could not be read (a truncated or corrupt file): skip it, name it."""


@dataclass
class Raster:
    item: Item
    path: Path
    width: int
    height: int
    geo: Geo | None
    bands: list[int]
    block: tuple[int, int]  # rows, cols of the raster's tiles (or strips)
    masked: bool  # has nodata, alpha or an internal mask
    scale: float | None = None  # non-8-bit rasters: 255 / the largest valid value


@dataclass
class Scan:
    """What streaming one raster found besides the predictions."""

    valid_pixels: int = 0
    windows: int = 0
    windows_skipped: int = 0  # no valid pixel: not predicted
    outside: int = 0  # boxes dropped because their centre lay outside the footprint
    footprint: np.ndarray | None = None  # coarse valid mask (step `step` px), for the footprint polygon
    preview: np.ndarray | None = None  # coarse RGB copy for --draw
    step: int = 1
    extra: dict = field(default_factory=dict)


def gdal_env():
    import rasterio

    return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB, GDAL_NUM_THREADS=1)


def open_raster(item: Item) -> Raster | None:
    """A Raster when the item is a TIFF to stream (georeferenced, or too large for PIL), else None (read whole)."""
    if item.path.suffix.lower() not in (".tif", ".tiff"):
        return None
    import rasterio
    from rasterio.enums import MaskFlags
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    try:
        with warnings.catch_warnings(), gdal_env():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(item.path) as src:
                georeferenced = src.crs is not None and not src.transform.is_identity
                if not georeferenced and src.width * src.height <= STREAM_PIXELS:
                    return None
                geo = Geo(tuple(src.transform)[:6], src.crs.to_string()) if georeferenced else None
                colour = [i + 1 for i, c in enumerate(src.colorinterp) if c.name in ("red", "green", "blue")]
                bands = colour if len(colour) == 3 else [1, 2, 3] if src.count >= 3 else [1, 1, 1]
                masked = any(MaskFlags.all_valid not in flags for flags in src.mask_flag_enums)
                raster = Raster(item, item.path, src.width, src.height, geo, bands, tuple(src.block_shapes[0]),
                                masked)
                if src.dtypes[0] != "uint8":
                    raster.scale = 255.0 / (_largest(src, raster) or 1.0)
                return raster
    except RasterioIOError:
        return None  # not something GDAL reads as a raster: PIL says why


def _largest(src, r: Raster) -> float:
    """The largest valid value of the colour bands (16-bit and float rasters are scaled by it to 8 bits)."""
    top = 0.0
    for x0, y0, x1, y1 in chunks(r):
        pixels, valid = _read_raw(src, r, x0, y0, x1, y1)
        values = pixels[:, valid] if valid is not None else pixels
        if values.size:
            top = max(top, float(np.nanmax(values)))
    return top


def chunks(r: Raster) -> list[tuple[int, int, int, int]]:
    """(left, top, right, bottom) reads covering the raster, each a whole number of its blocks."""
    bh, bw = r.block
    ch = bh * max(1, CHUNK // bh) if bh <= CHUNK else CHUNK
    cw = bw * max(1, CHUNK // bw) if bw <= CHUNK else CHUNK
    return [(x, y, min(x + cw, r.width), min(y + ch, r.height))
            for y in range(0, r.height, ch) for x in range(0, r.width, cw)]


def _read_raw(src, r: Raster, x0: int, y0: int, x1: int, y1: int) -> tuple[np.ndarray, np.ndarray | None]:
    from rasterio.windows import Window

    window = Window(x0, y0, x1 - x0, y1 - y0)
    try:
        pixels = src.read(r.bands, window=window)
        valid = src.dataset_mask(window=window) > 0 if r.masked else None
    except Exception as e:  # noqa: BLE001 — GDAL raises RasterioIOError, CPLE_*, ValueError... for broken blocks
        raise Unreadable(f"cannot read pixels {x0},{y0}-{x1},{y1}: {str(e).splitlines()[0] if str(e) else e!r}")
    return pixels, valid


def _read(src, r: Raster, x0: int, y0: int, x1: int, y1: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(HxWx3 uint8 RGB, HxW valid mask or None when every pixel is valid) of one region."""
    pixels, valid = _read_raw(src, r, x0, y0, x1, y1)
    if r.scale is not None:
        pixels = np.clip(np.round(np.nan_to_num(pixels.astype(np.float64)) * r.scale), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.moveaxis(pixels, 0, -1)), valid


def _coarse(scan: Scan, r: Raster, x0: int, y0: int, image: np.ndarray, valid: np.ndarray | None,
            x1: int, y1: int, draw: bool) -> None:
    """Count the valid pixels of the region [x0, x1) x [y0, y1) (each pixel of the raster once) and copy every
    `step`-th pixel of it into the coarse footprint mask (and preview)."""
    core = valid[: y1 - y0, : x1 - x0] if valid is not None else None
    scan.valid_pixels += int(core.sum()) if core is not None else (x1 - x0) * (y1 - y0)
    s = scan.step
    oy, ox = (-y0) % s, (-x0) % s  # first row/column of the region on the coarse grid
    gy, gx = (y0 + oy) // s, (x0 + ox) // s
    if core is not None:
        sub = core[oy::s, ox::s]
        scan.footprint[gy:gy + sub.shape[0], gx:gx + sub.shape[1]] = sub
    if draw:
        sub = image[oy:y1 - y0:s, ox:x1 - x0:s]
        scan.preview[gy:gy + sub.shape[0], gx:gx + sub.shape[1]] = sub


def _new_scan(r: Raster, draw: bool) -> Scan:
    step = max(1, math.ceil(max(r.width, r.height) / PREVIEW))
    shape = (math.ceil(r.height / step), math.ceil(r.width / step))
    return Scan(step=step, footprint=np.ones(shape, bool),
                preview=np.zeros((*shape, 3), np.uint8) if draw else None)


def detect(predict: Callable[[list[np.ndarray]], list[Detections]], r: Raster, size: int | None, *,
           overlap: float, merge_ios: float, batch: int, draw: bool = False) -> tuple[Detections, Scan]:
    """All detections of the raster (merged across windows, in raster pixels) and what the scan found.

    `predict` gives one Detections per window array (the model's max_det applies to each); `size` is the window
    side (None: one window, the whole raster)."""
    import rasterio

    scan = _new_scan(r, draw)
    wins = [(0, 0, r.width, r.height)] if size is None else windows(r.width, r.height, size, overlap)
    regions = chunks(r)
    by_chunk: dict[int, list] = {}
    cw, ch = regions[0][2] - regions[0][0], regions[0][3] - regions[0][1]
    per_row = math.ceil(r.width / cw)
    for win in wins:
        by_chunk.setdefault((win[1] // ch) * per_row + win[0] // cw, []).append(win)
    boxes, classes, scores = [], [], []
    capped = 0
    pending: list[tuple[tuple, np.ndarray, np.ndarray | None]] = []

    def flush() -> None:
        nonlocal capped
        found = predict([view for _, view, _ in pending])
        for ((left, top, _, _), _, valid), det in zip(pending, found):
            capped += det.capped
            for box, cls, score in zip(det.boxes, det.classes, det.scores):
                if valid is not None:
                    cy = min(int(box[1] + box[3] / 2), valid.shape[0] - 1)
                    cx = min(int(box[0] + box[2] / 2), valid.shape[1] - 1)
                    if not valid[cy, cx]:
                        scan.outside += 1
                        continue
                boxes.append([box[0] + left, box[1] + top, box[2], box[3]])
                classes.append(cls)
                scores.append(score)
        scan.windows += len(pending)
        pending.clear()

    with gdal_env(), rasterio.open(r.path) as src:
        for index, (x0, y0, x1, y1) in enumerate(regions):
            mine = by_chunk.get(index, [])
            right = max([x1] + [w[2] for w in mine])
            bottom = max([y1] + [w[3] for w in mine])
            image, valid = _read(src, r, x0, y0, right, bottom)
            _coarse(scan, r, x0, y0, image, valid, x1, y1, draw)
            for win in mine:
                left, top, wr, wb = win
                wvalid = None if valid is None else valid[top - y0:wb - y0, left - x0:wr - x0]
                if wvalid is not None and not wvalid.any():
                    scan.windows_skipped += 1
                    continue
                pending.append((win, image[top - y0:wb - y0, left - x0:wr - x0], wvalid))
                if len(pending) >= batch:
                    flush()
        if pending:
            flush()
    if size is None:
        return Detections(boxes, classes, scores, scan.windows, capped), scan
    merged = merge(boxes, classes, scores, merge_ios)
    return Detections(merged.boxes, merged.classes, merged.scores, scan.windows, capped), scan


@contextlib.contextmanager
def region_reader(r: Raster) -> Iterator[Callable[[list[tuple[int, int, int, int]]], list[np.ndarray]]]:
    """A function giving the HxWx3 uint8 pixels of (left, top, right, bottom) regions of the raster, read from the
    file (GDAL's capped block cache keeps the blocks read last): the crops a two-stage model classifies."""
    import rasterio

    with gdal_env(), rasterio.open(r.path) as src:
        yield lambda regions: [_read(src, r, *region)[0] for region in regions]


def segment(probabilities: Callable[[list[np.ndarray]], list[np.ndarray]], r: Raster, size: int | None,
            out_path: Path, num_classes: int, *, overlap: float, batch: int, draw: bool = False
            ) -> tuple[list[int], Scan]:
    """Write the raster's class map to `out_path` (a tiled, compressed GeoTIFF; NODATA_CLASS outside the footprint)
    and return the pixels of each class and what the scan found.

    Window rows are predicted one after the other; their probabilities, weighted by blend_weight as in
    slicing.predict_blended, are added into a strip one window high and as wide as the raster. The rows above the
    next window row are final: they are written and the strip moves down. Memory: (classes + 1) x 4 bytes x
    window x raster width."""
    import rasterio
    from rasterio.transform import Affine
    from rasterio.windows import Window

    from wildtrain.io import atomic_path

    scan = _new_scan(r, draw)
    size = size or max(r.width, r.height)
    wins = windows(r.width, r.height, size, overlap)
    tops = sorted({w[1] for w in wins})
    ramp = max(1, int(round(size * overlap)))
    counts = np.zeros(num_classes, np.int64)
    profile = {"driver": "GTiff", "width": r.width, "height": r.height, "count": 1, "dtype": "uint8",
               "nodata": NODATA_CLASS if r.masked else None, "tiled": True, "blockxsize": 512, "blockysize": 512,
               "compress": "deflate", "BIGTIFF": "IF_SAFER"}
    if r.geo is not None:
        profile.update(crs=r.geo.crs, transform=Affine(*r.geo.transform[:6]))
    with atomic_path(out_path) as tmp, gdal_env(), rasterio.open(r.path) as src, \
            rasterio.open(tmp, "w", **profile) as dst:
        strip_top, total, weight = 0, None, None
        for row, top in enumerate(tops):
            bottom = min(top + size, r.height)
            image, valid = _read(src, r, 0, top, r.width, bottom)
            next_top = tops[row + 1] if row + 1 < len(tops) else r.height
            _coarse(scan, r, 0, top, image, valid, r.width, next_top, draw)
            if total is None:
                total = np.zeros((num_classes, bottom - top, r.width), np.float32)
                weight = np.zeros((bottom - top, r.width), np.float32)
            elif bottom - strip_top > total.shape[1]:  # the strip grows to this row's bottom
                grow = bottom - strip_top - total.shape[1]
                total = np.concatenate([total, np.zeros((num_classes, grow, r.width), np.float32)], axis=1)
                weight = np.concatenate([weight, np.zeros((grow, r.width), np.float32)], axis=0)
            row_wins = [w for w in wins if w[1] == top]
            todo = []
            for win in row_wins:
                left, _, right, wb = win
                if valid is not None and not valid[:, left:right].any():
                    scan.windows_skipped += 1
                    continue
                todo.append(win)
            for start in range(0, len(todo), max(1, batch)):
                chunk = todo[start:start + batch]
                for (left, _, right, wb), probs in zip(chunk, probabilities([image[:, l:rr] for l, _, rr, _ in chunk])):
                    wgt = blend_weight(wb - top, right - left, ramp)
                    total[:, top - strip_top:wb - strip_top, left:right] += probs * wgt
                    weight[top - strip_top:wb - strip_top, left:right] += wgt
                scan.windows += len(chunk)
            done = next_top - strip_top  # rows no later window touches
            if done:  # strip_top == top: the strip starts at this window row
                rows_valid = weight[:done] > 0
                final = (total[:, :done] / np.where(rows_valid, weight[:done], 1.0)).argmax(0).astype(np.uint8)
                if valid is not None:
                    rows_valid &= valid[:done]
                final[~rows_valid] = NODATA_CLASS if r.masked else 0
                counts += np.bincount(final[rows_valid].ravel(), minlength=num_classes)[:num_classes]
                dst.write(final, 1, window=Window(0, strip_top, r.width, done))
                total, weight = total[:, done:].copy(), weight[done:].copy()
                strip_top = next_top
    return counts.tolist(), scan

