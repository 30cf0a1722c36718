"""What `wildtrain predict` writes under --out: COCO detections, a CSV of boxes (image_path,xmin,ymin,xmax,ymax,
label,score — the layout ecologists read), the census (counts per class per image and in total), GeoJSON for
georeferenced images (boxes in map coordinates, and in WGS84 as GeoJSON requires), annotated copies with
--draw, and report.json (what was predicted, what was skipped and why). Files appear whole at the end.

A segmenter's class maps go to masks/<image>.png (palette PNGs: pixel value = class index; a GeoTIFF also as
masks/<image>.tif with its georeferencing) and the area of each class per image to areas.csv (pixels, and the
area of one pixel in the raster's CRS units when it has one)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from wildtrain.families.base import Detections, ModelCard, Segmentation
from wildtrain.io import write_json, write_text
from wildtrain.prediction.sources import Geo, Item

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


class Outputs:
    def __init__(self, out_dir: Path, card: ModelCard, draw: bool):
        self.out, self.card, self.draw = out_dir, card, draw
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

    def skip(self, item: Item, reason: str) -> None:
        self.skipped.append({"file": item.name, "reason": reason})

    def add(self, item: Item, image: np.ndarray, geo: Geo | None, pred) -> None:
        h, w = image.shape[:2]
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": item.name, "width": w, "height": h,
                            **({"crs": geo.crs, "transform": list(geo.transform)} if geo else {})})
        if isinstance(pred, Segmentation):
            self._add_mask(item, image, geo, pred)
            return
        if not isinstance(pred, Detections):  # a classifier: one label per image
            label = self.names[pred.label]
            self.boxes.append([item.name, label, round(pred.scores[pred.label], 5)])
            self.counts[item.name] = {label: 1}
            return
        counts = dict.fromkeys(self.names, 0)
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
                self.features.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [
                    _wgs84(geo, ring)]}, "properties": {"image": item.name, "label": label, "score": round(score, 5),
                                                        "crs": geo.crs, "map_bbox": [round(v, 3) for v in (
                                                            *ring[0], *ring[2])]}})
        self.counts[item.name] = counts
        if self.draw:
            self._draw(item, image, pred)

    def _add_mask(self, item: Item, image: np.ndarray, geo: Geo | None, pred: Segmentation) -> None:
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

    def _draw(self, item: Item, image: np.ndarray, pred: Detections) -> None:
        from PIL import Image, ImageDraw

        canvas = Image.fromarray(image)
        pen = ImageDraw.Draw(canvas)
        width = max(2, round(max(canvas.size) / 800))
        for box, cls, score in zip(pred.boxes, pred.classes, pred.scores):
            x, y, bw, bh = box
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
                  "files": sorted(p.name for p in self.out.iterdir() if p.is_file()) + ["report.json"]}
        write_json(self.out / "report.json", report)
        return report

    def close(self, summary: dict) -> dict:
        if self.card.task == "semantic-segmentation":
            return self._close_masks(summary)
        if self.card.task == "object-detection":
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
        report = {**summary, "images_in": len(self.images) + len(self.skipped), "predicted": len(self.images),
                  "skipped": self.skipped, "total": total, "per_image": self.counts,
                  "files": sorted(p.name for p in self.out.iterdir() if p.is_file()) + ["report.json"]}
        write_json(self.out / "report.json", report)
        return report
