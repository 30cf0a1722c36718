"""The census of a survey: how many animals of each class, over how much surveyed ground, and so at what density.

- Area is the valid-data footprint (nodata, alpha and padding excluded), not the raster's bounding rectangle: its
  valid pixels times one pixel's ground area in a projected CRS; in a geographic CRS (degrees) the footprint
  polygon's area on an equal-area projection (EPSG:6933).
- Overlapping frames of one flight: every detection is placed on the ground (one CRS for the whole survey: the
  first georeferenced image's), and the same animal seen in two frames — same class, boxes overlapping by >=
  merge_ios of the smaller, as slices are merged — is counted once. Raw and de-duplicated counts are both given;
  the survey's area is then the union of the frames' footprints.
- `--areas FILE` (GeoPackage, GeoJSON: strata, transects): per polygon, the de-duplicated animals whose box centre
  lies in it, the surveyed area inside it, and their density.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wildtrain.errors import WildtrainError

EQUAL_AREA = "EPSG:6933"  # WGS 84 / NSIDC EASE-Grid 2.0 Global: areas of footprints given in degrees
NAME_FIELDS = ("name", "stratum", "transect", "id", "label")  # the first of these an --areas polygon has names it


@dataclass
class Frame:
    """One georeferenced image of the survey."""

    name: str
    crs: str
    footprint: object  # shapely geometry, in `crs`
    area_m2: float
    boxes: list  # map xyxy of each detection, in `crs`
    classes: list[int]
    scores: list[float]


def footprint(mask: np.ndarray | None, step: int, width: int, height: int, transform: tuple) -> object:
    """The valid-data polygon in map coordinates: from the coarse mask (every `step`-th pixel), or the raster's
    rectangle when every pixel is valid."""
    import shapely
    from rasterio.features import shapes
    from rasterio.transform import Affine

    affine = Affine(*transform[:6])
    rectangle = shapely.Polygon([affine @ (0, 0), affine @ (width, 0), affine @ (width, height), affine @ (0, height)])
    if mask is None or mask.all():
        return rectangle
    coarse = affine @ Affine.scale(step)
    parts = [shapely.geometry.shape(g) for g, v in shapes(mask.astype(np.uint8), mask=mask, transform=coarse) if v]
    return shapely.union_all(parts).intersection(rectangle) if parts else shapely.Polygon()


def metres_per_unit(crs: str) -> float | None:
    """Metres per unit of a projected CRS; None for a geographic one (degrees)."""
    from rasterio.crs import CRS

    c = CRS.from_user_input(crs)
    if c.is_geographic:
        return None
    return float(c.linear_units_factor[1])


def area_m2(geometry, crs: str) -> float:
    """Ground area of a polygon given in `crs`."""
    import shapely
    from rasterio.warp import transform_geom

    if geometry.is_empty:
        return 0.0
    factor = metres_per_unit(crs)
    if factor is not None:
        return float(geometry.area) * factor * factor
    return float(shapely.geometry.shape(transform_geom(crs, EQUAL_AREA, shapely.geometry.mapping(geometry))).area)


def pixels_area_m2(valid_pixels: int, transform: tuple, crs: str, geometry) -> float:
    """Area of the valid pixels: exact in a projected CRS; the footprint's area in a geographic one."""
    factor = metres_per_unit(crs)
    if factor is None:
        return area_m2(geometry, crs)
    a, b, _, d, e, _ = transform[:6]
    return valid_pixels * abs(a * e - b * d) * factor * factor


def _to(geometry, src: str, dst: str):
    import shapely
    from rasterio.warp import transform_geom

    if src == dst or geometry.is_empty:
        return geometry
    return shapely.geometry.shape(transform_geom(src, dst, shapely.geometry.mapping(geometry)))


def _boxes_to(boxes: np.ndarray, src: str, dst: str) -> np.ndarray:
    """Map xyxy boxes from one CRS to another (the box around the four moved corners)."""
    from rasterio.warp import transform

    if src == dst or not len(boxes):
        return boxes
    xs = np.concatenate([boxes[:, 0], boxes[:, 2], boxes[:, 2], boxes[:, 0]])
    ys = np.concatenate([boxes[:, 1], boxes[:, 1], boxes[:, 3], boxes[:, 3]])
    tx, ty = (np.asarray(v).reshape(4, -1) for v in transform(src, dst, xs.tolist(), ys.tolist()))
    return np.stack([tx.min(0), ty.min(0), tx.max(0), ty.max(0)], axis=1)


def read_areas(path: Path, crs: str) -> list[tuple[str, object]]:
    """(name, polygon in `crs`) of each polygon of a GeoPackage / GeoJSON / any vector file GDAL reads."""
    import pyogrio.raw
    import shapely

    if not path.is_file():
        raise WildtrainError(f"--areas {path}: no such file")
    try:
        meta, _, geometry, fields = pyogrio.raw.read(path)
    except Exception as e:  # noqa: BLE001 — GDAL's errors for unreadable vector files have several types
        raise WildtrainError(f"--areas {path}: not a vector file GDAL reads ({str(e).splitlines()[0]})") from None
    source_crs = meta.get("crs") or "EPSG:4326"  # GeoJSON without a crs member is WGS84 by the standard
    names = [str(n).lower() for n in meta["fields"]]
    column = next((names.index(n) for n in NAME_FIELDS if n in names), None)
    out = []
    for i, wkb in enumerate(geometry):
        geom = shapely.from_wkb(wkb) if wkb is not None else None
        if geom is None or geom.geom_type not in ("Polygon", "MultiPolygon"):
            continue
        name = str(fields[column][i]) if column is not None else f"area {i + 1}"
        out.append((name, _to(shapely.make_valid(geom), source_crs, crs)))
    if not out:
        raise WildtrainError(f"--areas {path}: no polygons found (strata, transects must be polygons)")
    return out


def _counts(classes, names: list[str]) -> dict[str, int]:
    counts = dict.fromkeys(names, 0)
    for c in classes:
        counts[names[c]] += 1
    return counts


def _density(counts: dict[str, int], m2: float) -> dict:
    total = sum(counts.values())
    km2 = m2 / 1e6
    return {"area_km2": round(km2, 6), "area_ha": round(m2 / 1e4, 4), "counts": counts, "total": total,
            "density_per_km2": {k: round(v / km2, 4) for k, v in counts.items()} if km2 > 0 else None,
            "density_per_ha": {k: round(v / (km2 * 100), 6) for k, v in counts.items()} if km2 > 0 else None}


def deduplicate(boxes: np.ndarray, classes: np.ndarray, scores: np.ndarray, frame: np.ndarray, ios: float
                ) -> np.ndarray:
    """Which ground boxes to count: best score first, a box absorbs, from each other frame, the best-scoring box of
    its class that overlaps it by >= ios of the smaller. Boxes of one frame never absorb each other (slicing has
    merged them already: they are different animals)."""
    from wildtrain.slicing import intersection_over_smaller, neighbours

    kept = np.zeros(len(boxes), bool)
    if not len(boxes):
        return kept
    near = neighbours(boxes)
    used = np.zeros(len(boxes), bool)
    for i in np.argsort(-scores, kind="stable"):
        if used[i]:
            continue
        used[i] = kept[i] = True
        group = near(i)
        group = group[~used[group] & (classes[group] == classes[i]) & (frame[group] != frame[i])]
        group = group[intersection_over_smaller(boxes[i], boxes[group]) >= ios]
        for f in np.unique(frame[group]):
            mine = group[frame[group] == f]
            used[mine[np.argmax(scores[mine])]] = True
    return kept


def census(frames: list[Frame], names: list[str], merge_ios: float, areas: Path | None) -> tuple[dict, dict]:
    """(the report's census section, what the GeoPackage needs: survey CRS, kept flags, footprints, polygons)."""
    import shapely

    crs = frames[0].crs
    boxes = np.concatenate([_boxes_to(np.asarray(f.boxes, float).reshape(-1, 4), f.crs, crs) for f in frames])
    classes = np.asarray([c for f in frames for c in f.classes], int)
    scores = np.asarray([s for f in frames for s in f.scores], float)
    frame = np.asarray([k for k, f in enumerate(frames) for _ in f.classes], int)
    kept = deduplicate(boxes, classes, scores, frame, merge_ios)
    footprints = [_to(f.footprint, f.crs, crs) for f in frames]
    union = shapely.union_all(footprints)
    overlapping = sum(fp.area for fp in footprints) > union.area * (1 + 1e-9)
    survey_m2 = area_m2(union, crs) if overlapping else sum(f.area_m2 for f in frames)
    section = {"crs": crs, "frames": len(frames), "frames_overlap": bool(overlapping), "merge_ios": merge_ios,
               "raw": _counts(classes, names), **_density(_counts(classes[kept], names), survey_m2),
               "per_image": {f.name: _density(_counts(f.classes, names), f.area_m2) for f in frames}}
    polygons = []
    if areas is not None:
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2 if len(boxes) else np.zeros((0, 2))
        section["areas_file"] = str(areas)
        section["areas"] = {}
        for name, polygon in read_areas(areas, crs):
            inside = shapely.contains_xy(polygon, centres[:, 0], centres[:, 1]) & kept if len(boxes) else kept
            row = _density(_counts(classes[inside], names), area_m2(polygon.intersection(union), crs))
            row["polygon_area_km2"] = round(area_m2(polygon, crs) / 1e6, 6)
            section["areas"][name] = row
            polygons.append((name, polygon, row))
    return section, {"crs": crs, "boxes": boxes, "kept": kept, "footprints": footprints, "polygons": polygons}


def write_gpkg(path: Path, frames: list[Frame], names: list[str], geo: dict, section: dict) -> None:
    """detections (every box on the ground, `counted` 0 for a duplicate of a box in another frame), footprints
    (one per image, with its counts) and, with --areas, areas (each polygon with its counts and density)."""
    from wildtrain.io import atomic_path

    with atomic_path(path) as tmp:
        gpkg = tmp.with_name(f"{tmp.name}.gpkg")  # GDAL creates the file itself, and wants its extension
        try:
            _write_layers(gpkg, frames, names, geo, section)
            os.replace(gpkg, tmp)
        finally:
            gpkg.unlink(missing_ok=True)


def _write_layers(tmp: Path, frames: list[Frame], names: list[str], geo: dict, section: dict) -> None:
    import pyogrio.raw
    import shapely

    boxes = geo["boxes"]
    images = [f.name for f in frames for _ in f.classes]
    rings = shapely.box(boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]) if len(boxes) else np.array([])
    classes = [c for f in frames for c in f.classes]
    scores = [s for f in frames for s in f.scores]
    pyogrio.raw.write(tmp, shapely.to_wkb(rings) if len(boxes) else np.array([], object), [
        np.asarray(images, object), np.asarray([names[c] for c in classes], object),
        np.asarray(scores, float), geo["kept"].astype(np.int32)],
        ["image", "label", "score", "counted"], layer="detections", driver="GPKG", geometry_type="Polygon",
        crs=geo["crs"])
    per_image = section["per_image"]
    fps = [_multi(g) for g in geo["footprints"]]
    pyogrio.raw.write(tmp, shapely.to_wkb(np.asarray(fps, object)), [
        np.asarray([f.name for f in frames], object),
        np.asarray([per_image[f.name]["area_ha"] for f in frames], float),
        *[np.asarray([per_image[f.name]["counts"][n] for f in frames], np.int64) for n in names],
        np.asarray([per_image[f.name]["total"] for f in frames], np.int64)],
        ["image", "area_ha", *names, "total"], layer="footprints", driver="GPKG", geometry_type="MultiPolygon",
        crs=geo["crs"], append=True)
    if geo["polygons"]:
        polys = [_multi(g) for _, g, _ in geo["polygons"]]
        rows = [row for _, _, row in geo["polygons"]]
        pyogrio.raw.write(tmp, shapely.to_wkb(np.asarray(polys, object)), [
            np.asarray([n for n, _, _ in geo["polygons"]], object), np.asarray([r["area_ha"] for r in rows], float),
            *[np.asarray([r["counts"][n] for r in rows], np.int64) for n in names],
            np.asarray([r["total"] for r in rows], np.int64),
            np.asarray([(r["total"] / r["area_km2"]) if r["area_km2"] else np.nan for r in rows], float)],
            ["name", "area_ha", *names, "total", "density_per_km2"], layer="areas", driver="GPKG",
            geometry_type="MultiPolygon", crs=geo["crs"], append=True)


def _multi(geometry):
    """A MultiPolygon of the polygons of any geometry (a GeoPackage layer holds one geometry type)."""
    import shapely

    if geometry.geom_type == "MultiPolygon":
        return geometry
    if geometry.geom_type == "Polygon":
        return shapely.MultiPolygon([geometry])
    parts = [g for g in getattr(geometry, "geoms", []) if g.geom_type == "Polygon"]
    parts += [p for g in getattr(geometry, "geoms", []) if g.geom_type == "MultiPolygon" for p in g.geoms]
    return shapely.MultiPolygon(parts)
