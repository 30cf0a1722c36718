"""What `wildtrain predict` writes under --out: COCO detections, a CSV of boxes (image_path,xmin,ymin,xmax,ymax,
label,score — the layout ecologists read), the census (counts per class per image and in total), GeoJSON for
georeferenced images (boxes in map coordinates, and in WGS84 as GeoJSON requires), annotated copies with
--draw, and report.json (what was predicted, what was skipped and why). Files appear whole at the end.

A segmenter's class maps go to masks/<image>.png (palette PNGs: pixel value = class index; a GeoTIFF also as
masks/<image>.tif with its georeferencing) and the area of each class per image to areas.csv (pixels, and the
area of one pixel in the raster's CRS units when it has one). Large rasters are streamed (prediction.raster): their
class map is written window by window to masks/<image>.tif only (pixels outside the footprint: 255).

Georeferenced detections also make a census (prediction.census): counts, surveyed area and density in
report.json ("census") and census.csv, and detections.gpkg (detections, footprints, --areas polygons).
report.json's "limits" says how many windows returned max_det boxes (animals may be missing there).

An instance segmenter writes all a detector writes (its boxes), each instance's outline as COCO polygons in
detections.json (`segmentation`, image pixels), and for georeferenced images instances.geojson (outlines in WGS84)
and instances.gpkg (outlines in the first image's CRS, layer `instances`)."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from wildtrain.contract import Detections, Instances, ModelCard, Segmentation
from wildtrain.io import write_json, write_text
from wildtrain.prediction import census
from wildtrain.prediction.sources import Geo, Item
from wildtrain.tasks import task_of

COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]


def _csv(rows: list[list], header: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def _wgs84(geo: Geo, ring: list[tuple[float, float]]) -> list[list[float]]:
    from rasterio.warp import transform

    xs, ys = transform(geo.crs, "EPSG:4326", [p[0] for p in ring], [p[1] for p in ring])
    return [[round(x, 8), round(y, 8)] for x, y in zip(xs, ys)]


def _class_filter(classes: str | None, card: ModelCard) -> set[int] | None:
    """--classes a,b -> their indices (None: every class); an unknown name is one clear line."""
    from wildtrain.errors import WildtrainError

    if classes is None:
        return None
    if not task_of(card).boxes:
        raise WildtrainError(f"--classes: only for detectors (this model is a {card.family})")
    wanted = [c.strip() for c in classes.split(",") if c.strip()]
    unknown = [c for c in wanted if c not in card.class_names]
    if unknown or not wanted:
        raise WildtrainError(f"--classes: unknown class '{unknown[0] if unknown else classes}' (the model's classes: "
                             f"{', '.join(card.class_names)})")
    return {card.class_names.index(c) for c in wanted}


class Outputs:
    def __init__(self, out_dir: Path, card: ModelCard, draw: bool, areas: Path | None = None,
                 merge_ios: float = 0.5, max_det: int | None = None, classes: str | None = None):
        self.out, self.card, self.draw = out_dir, card, draw
        self.task = task_of(card)  # what is written: detections, labels or masks
        self.only = _class_filter(classes, card)
        self.areas_file, self.merge_ios, self.max_det = areas, merge_ios, max_det
        if areas is not None:
            census.read_areas(Path(areas), "EPSG:4326")  # a bad file is refused before any image is predicted
        self.names = card.class_names
        ids = card.extra.get("category_ids")
        self.category_ids = ids if ids and len(ids) == len(self.names) else list(range(1, len(self.names) + 1))
        self.images: list[dict] = []
        self.boxes: list[list] = []
        self.coco: list[dict] = []
        self.counts: dict[str, dict[str, int]] = {}
        self.features: list[dict] = []
        self.skipped: list[dict] = []
        self.areas: dict[str, dict] = {}  # segmenter: image -> pixels per class (+ the pixel's map area)
        self.frames: list[census.Frame] = []  # georeferenced images with detections: the census
        self.windows = 0  # the model's forward passes (windows of large images)
        self.capped: dict[str, int] = {}  # image -> windows that returned max_det boxes
        self.streamed: dict[str, dict] = {}  # large rasters: windows skipped outside the footprint, boxes dropped
        self.outlines: list[dict] = []  # instance segmenter, georeferenced images: outlines in WGS84 (GeoJSON)
        self.map_outlines: list[tuple] = []  # (crs, [rings in map coordinates], image, label, score)

    def skip(self, item: Item, reason: str) -> None:
        self.skipped.append({"file": item.name, "reason": reason})

    def _image(self, item: Item, width: int, height: int, geo: Geo | None) -> int:
        self.images.append({"id": len(self.images) + 1, "file_name": item.name, "width": width, "height": height,
                            **({"crs": geo.crs, "transform": list(geo.transform)} if geo else {})})
        return len(self.images)

    def add(self, item: Item, image: np.ndarray, geo: Geo | None, pred) -> None:
        h, w = image.shape[:2]
        image_id = self._image(item, w, h, geo)
        {"detections": self._add_detections, "labels": self._add_label, "masks": self._add_mask,
         "instances": self._add_instances}[self.task.writes](item, image, image_id, geo, pred)

    def _add_detections(self, item: Item, image: np.ndarray, image_id: int, geo: Geo | None, pred: Detections) -> None:
        h, w = image.shape[:2]
        self._detections(item, image_id, geo, pred, w * h, None, 1, w, h)
        if self.draw:
            self._draw(item, image, pred)

    def _add_instances(self, item: Item, image: np.ndarray, image_id: int, geo: Geo | None, pred: Instances) -> None:
        """Boxes as a detector's (counts, census), then each instance's polygons: into its detections.json entry,
        and on the ground for a georeferenced image."""
        keep = [i for i, c in enumerate(pred.classes) if self.only is None or c in self.only]
        first = len(self.coco)
        self._detections(item, image_id, geo, Detections([pred.boxes[i] for i in keep], [pred.classes[i] for i in keep],
                                                         [pred.scores[i] for i in keep], pred.windows, pred.capped),
                         image.shape[0] * image.shape[1], None, 1, image.shape[1], image.shape[0])
        polys = [pred.polygons[i] for i in keep]
        for entry, outline in zip(self.coco[first:], polys):
            entry["segmentation"] = [[round(v, 2) for v in poly] for poly in outline]
        if geo is not None:
            for i, outline in zip(keep, polys):
                rings = [[geo.to_map(x, y) for x, y in zip(poly[0::2], poly[1::2])] for poly in outline]
                rings = [ring + ring[:1] for ring in rings if len(ring) >= 3]
                if not rings:
                    continue
                label, score = self.names[pred.classes[i]], round(pred.scores[i], 5)
                self.map_outlines.append((geo.crs, rings, item.name, label, score))
                self.outlines.append({"type": "Feature", "geometry": {
                    "type": "MultiPolygon", "coordinates": [[_wgs84(geo, ring)] for ring in rings]},
                    "properties": {"image": item.name, "label": label, "score": score, "crs": geo.crs}})
        if self.draw:
            self._draw_outlines(item, image, pred, keep)

    def _draw_outlines(self, item: Item, image: np.ndarray, pred: Instances, keep: list[int]) -> None:
        from PIL import Image, ImageDraw

        canvas = Image.fromarray(image)
        pen = ImageDraw.Draw(canvas)
        width = max(2, round(max(canvas.size) / 800))
        for i in keep:
            colour = COLOURS[pred.classes[i] % len(COLOURS)]
            for poly in pred.polygons[i]:
                pen.line(list(zip(poly[0::2], poly[1::2])) + [(poly[0], poly[1])], fill=colour, width=width)
            x, y = pred.boxes[i][:2]
            pen.text((x, max(0, y - 12)), f"{self.names[pred.classes[i]]} {pred.scores[i]:.2f}", fill=colour)
        target = self.out / "draw" / Path(item.name).with_suffix(".jpg")
        target.parent.mkdir(parents=True, exist_ok=True)
        canvas.save(target, quality=90)

    def _write_outlines(self) -> None:
        """instances.geojson (WGS84) and instances.gpkg (the first image's CRS; other CRSs reprojected to it)."""
        import pyogrio.raw
        import shapely
        from rasterio.warp import transform

        from wildtrain.io import atomic_path

        write_json(self.out / "instances.geojson", {"type": "FeatureCollection", "features": self.outlines})
        crs = self.map_outlines[0][0]
        shapes = []
        for src, rings, *_ in self.map_outlines:
            if src != crs:
                rings = [list(zip(*transform(src, crs, [p[0] for p in r], [p[1] for p in r]))) for r in rings]
            shapes.append(shapely.MultiPolygon([shapely.Polygon(r) for r in rings]))
        with atomic_path(self.out / "instances.gpkg") as tmp:
            gpkg = tmp.with_name(f"{tmp.name}.gpkg")  # GDAL creates the file itself, and wants its extension
            try:
                pyogrio.raw.write(gpkg, shapely.to_wkb(np.asarray(shapes, object)), [
                    np.asarray([o[2] for o in self.map_outlines], object),
                    np.asarray([o[3] for o in self.map_outlines], object),
                    np.asarray([o[4] for o in self.map_outlines], float)],
                    ["image", "label", "score"], layer="instances", driver="GPKG", geometry_type="MultiPolygon",
                    crs=crs)
                os.replace(gpkg, tmp)
            finally:
                gpkg.unlink(missing_ok=True)

    def _add_label(self, item: Item, image: np.ndarray, image_id: int, geo: Geo | None, pred) -> None:
        """A classifier: one label per image."""
        label = self.names[pred.label]
        self.boxes.append([item.name, label, round(pred.scores[pred.label], 5)])
        self.counts[item.name] = {label: 1}

    def add_raster(self, item: Item, raster, pred: Detections, scan) -> None:
        """A streamed raster's merged detections and what its scan found (footprint, skipped windows)."""
        image_id = self._image(item, raster.width, raster.height, raster.geo)
        self.streamed[item.name] = {"windows_skipped_outside_footprint": scan.windows_skipped,
                                    "boxes_dropped_outside_footprint": scan.outside,
                                    "valid_pixels": scan.valid_pixels}
        mask = scan.footprint if raster.masked else None
        self._detections(item, image_id, raster.geo, pred, scan.valid_pixels, mask, scan.step, raster.width,
                         raster.height)
        if self.draw:
            self._draw(item, scan.preview, pred, scan.step)

    def _detections(self, item: Item, image_id: int, geo: Geo | None, pred: Detections, valid_pixels: int,
                    mask: np.ndarray | None, step: int, width: int, height: int) -> None:
        if self.only is not None:
            keep = [i for i, c in enumerate(pred.classes) if c in self.only]
            pred = Detections([pred.boxes[i] for i in keep], [pred.classes[i] for i in keep],
                              [pred.scores[i] for i in keep], pred.windows, pred.capped)
        self.windows += pred.windows
        if pred.capped:
            self.capped[item.name] = pred.capped
        counts = dict.fromkeys(self.names, 0)
        map_boxes, rings = [], []
        for box, cls, score in zip(pred.boxes, pred.classes, pred.scores):
            x, y, bw, bh = box
            label = self.names[cls]
            counts[label] += 1
            self.boxes.append([item.name, round(x, 2), round(y, 2), round(x + bw, 2), round(y + bh, 2), label,
                               round(score, 5)])
            self.coco.append({"id": len(self.coco) + 1, "image_id": image_id, "category_id": self.category_ids[cls],
                              "bbox": [round(v, 2) for v in box], "score": round(score, 5),
                              "area": round(bw * bh, 2), "iscrowd": 0})
            if geo is not None:
                ring = [geo.to_map(px, py) for px, py in ((x, y), (x + bw, y), (x + bw, y + bh), (x, y + bh), (x, y))]
                xs, ys = [p[0] for p in ring], [p[1] for p in ring]
                map_boxes.append([min(xs), min(ys), max(xs), max(ys)])
                rings.append(ring)
        if rings:  # one reprojection call per image: thousands of animals in an orthomosaic
            lonlat = _wgs84(geo, [p for ring in rings for p in ring])
            for k, (ring, cls, score) in enumerate(zip(rings, pred.classes, pred.scores)):
                self.features.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [
                    lonlat[5 * k:5 * k + 5]]}, "properties": {"image": item.name, "label": self.names[cls],
                                                              "score": round(score, 5), "crs": geo.crs,
                                                              "map_bbox": [round(v, 3) for v in (*ring[0], *ring[2])]}})
        self.counts[item.name] = counts
        if geo is not None:
            shape = census.footprint(mask, step, width, height, geo.transform)
            self.frames.append(census.Frame(item.name, geo.crs, shape, census.pixels_area_m2(
                valid_pixels, geo.transform, geo.crs, shape), map_boxes, list(pred.classes), list(pred.scores)))

    def _add_mask(self, item: Item, image: np.ndarray, image_id: int, geo: Geo | None, pred: Segmentation) -> None:
        from wildtrain.io import write_bytes

        pixels = dict(zip(self.names, pred.areas(len(self.names))))
        a, b, _, d, e, _ = geo.transform[:6] if geo else (0,) * 6
        self.areas[item.name] = {**pixels, "pixel_area": abs(a * e - b * d) if geo else None}
        stem = Path(item.name).with_suffix("")
        write_bytes(self.out / "masks" / f"{stem}.png", pred.png())
        if geo is not None:
            self._geotiff(self.out / "masks" / f"{stem}.tif", pred.mask, geo)
        if self.draw:
            from PIL import Image

            from wildtrain.evaluate.segmentation import overlay

            target = self.out / "draw" / f"{stem}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(overlay(image, pred.mask)).save(target, quality=90)

    def mask_path(self, item: Item) -> Path:
        return self.out / "masks" / f"{Path(item.name).with_suffix('')}.tif"

    def add_raster_mask(self, item: Item, raster, pixels: list[int], scan) -> None:
        """A streamed raster's class map, already written to mask_path(item) by prediction.raster.segment."""
        self._image(item, raster.width, raster.height, raster.geo)
        a, b, _, d, e, _ = raster.geo.transform[:6] if raster.geo else (0,) * 6
        self.areas[item.name] = {**dict(zip(self.names, pixels)),
                                 "pixel_area": abs(a * e - b * d) if raster.geo else None}
        self.streamed[item.name] = {"windows_skipped_outside_footprint": scan.windows_skipped,
                                    "valid_pixels": scan.valid_pixels}
        if self.draw:
            import rasterio
            from PIL import Image

            from wildtrain.evaluate.segmentation import overlay

            with rasterio.open(self.mask_path(item)) as src:
                coarse = src.read(1, out_shape=scan.preview.shape[:2])
            target = self.out / "draw" / Path(item.name).with_suffix(".jpg")
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(overlay(scan.preview, np.where(coarse == 255, 0, coarse).astype(np.uint8))).save(
                target, quality=90)

    @staticmethod
    def _geotiff(path: Path, mask: np.ndarray, geo: Geo) -> None:
        import rasterio
        from rasterio.transform import Affine

        from wildtrain.io import atomic_path

        with atomic_path(path) as tmp:
            with rasterio.open(tmp, "w", driver="GTiff", width=mask.shape[1], height=mask.shape[0], count=1,
                               dtype="uint8", crs=geo.crs, transform=Affine(*geo.transform[:6]),
                               compress="deflate") as dst:
                dst.write(mask, 1)

    def _draw(self, item: Item, image: np.ndarray, pred: Detections, step: int = 1) -> None:
        """Boxes on the image (a streamed raster: on its coarse copy, every `step`-th pixel)."""
        from PIL import Image, ImageDraw

        canvas = Image.fromarray(image)
        pen = ImageDraw.Draw(canvas)
        width = max(2, round(max(canvas.size) / 800))
        for box, cls, score in zip(pred.boxes, pred.classes, pred.scores):
            x, y, bw, bh = (v / step for v in box)
            colour = COLOURS[cls % len(COLOURS)]
            pen.rectangle([x, y, x + bw, y + bh], outline=colour, width=width)
            pen.text((x, max(0, y - 12)), f"{self.names[cls]} {score:.2f}", fill=colour)
        target = self.out / "draw" / Path(item.name).with_suffix(".jpg")
        target.parent.mkdir(parents=True, exist_ok=True)
        canvas.save(target, quality=90)

    def _close_masks(self, summary: dict) -> dict:
        total = {n: sum(a[n] for a in self.areas.values()) for n in self.names}
        rows = [[name, *(a[n] for n in self.names), sum(a[n] for n in self.names),
                 "" if a["pixel_area"] is None else a["pixel_area"]] for name, a in self.areas.items()]
        write_text(self.out / "areas.csv", _csv(rows + [["TOTAL", *total.values(), sum(total.values()), ""]],
                                                ["image_path", *self.names, "total", "pixel_area"]))
        report = {**summary, "images_in": len(self.images) + len(self.skipped), "predicted": len(self.images),
                  "skipped": self.skipped, "unit": "pixels", "total": total, "per_image": self.areas,
                  **({"streamed": self.streamed} if self.streamed else {}),
                  "files": sorted(p.name for p in self.out.iterdir() if p.is_file()) + ["report.json"]}
        write_json(self.out / "report.json", report)
        return report

    def close(self, summary: dict) -> dict:
        if self.task.writes == "masks":
            return self._close_masks(summary)
        if self.task.writes in ("detections", "instances"):
            write_text(self.out / "detections.csv",
                       _csv(self.boxes, ["image_path", "xmin", "ymin", "xmax", "ymax", "label", "score"]))
            write_json(self.out / "detections.json", {
                "images": self.images, "annotations": self.coco,
                "categories": [{"id": i, "name": n} for i, n in zip(self.category_ids, self.names)]})
        else:
            write_text(self.out / "classifications.csv", _csv(self.boxes, ["image_path", "label", "score"]))
        total = {n: sum(c.get(n, 0) for c in self.counts.values()) for n in self.names}
        rows = [[name, *(c.get(n, 0) for n in self.names), sum(c.values())] for name, c in self.counts.items()]
        write_text(self.out / "counts.csv", _csv(rows + [["TOTAL", *total.values(), sum(total.values())]],
                                                 ["image_path", *self.names, "total"]))
        if self.features:
            write_json(self.out / "detections.geojson", {"type": "FeatureCollection", "features": self.features})
        if self.map_outlines:
            self._write_outlines()
        extra = {"limits": self._limits()} if self.task.boxes else {}
        if self.streamed:
            extra["streamed"] = self.streamed
        if self.frames:
            extra["census"] = self._census()
        elif self.areas_file is not None:
            extra["census"] = {"note": "--areas: no georeferenced image was predicted, so no ground positions"}
        report = {**summary, "images_in": len(self.images) + len(self.skipped), "predicted": len(self.images),
                  "skipped": self.skipped, "total": total, "per_image": self.counts, **extra,
                  "files": sorted(p.name for p in self.out.iterdir() if p.is_file()) + ["report.json"]}
        write_json(self.out / "report.json", report)
        return report

    def _limits(self) -> dict:
        """Where max_det bound: a window that returned max_det boxes may have held more animals."""
        hit = sum(self.capped.values())
        return {"max_det_per_window": self.max_det, "windows": self.windows, "windows_at_max_det": hit,
                "images_at_max_det": dict(sorted(self.capped.items())),
                "note": (f"{hit} of {self.windows} windows returned max_det boxes: animals may be missing there "
                         f"(raise --max-det)") if hit else "no limit was reached"}

    def _census(self) -> dict:
        section, geo = census.census(self.frames, self.names, self.merge_ios,
                                     Path(self.areas_file) if self.areas_file else None)
        census.write_gpkg(self.out / "detections.gpkg", self.frames, self.names, geo, section)
        rows = []
        for scope, name, row in ([("image", n, r) for n, r in section["per_image"].items()]
                                 + [("area", n, r) for n, r in section.get("areas", {}).items()]
                                 + [("survey", "TOTAL (de-duplicated)", section)]):
            dens = row["density_per_km2"] or {}
            rows.append([scope, name, row["area_km2"], row["area_ha"], *(row["counts"][n] for n in self.names),
                         row["total"], *(dens.get(n, "") for n in self.names),
                         round(row["total"] / row["area_km2"], 4) if row["area_km2"] else ""])
        write_text(self.out / "census.csv", _csv(rows, ["scope", "name", "area_km2", "area_ha", *self.names, "total",
                                                        *(f"{n}_per_km2" for n in self.names), "total_per_km2"]))
        return section
