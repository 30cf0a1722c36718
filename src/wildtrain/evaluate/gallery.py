"""The test images with the most errors, ground truth and predictions drawn: where to look first.

An error is a missed animal, a detection of nothing, or a box given the wrong class (matched at IoU >=
`confusion_iou`, detections with score >= `confusion_conf`, as in the confusion matrix).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from PIL import Image, ImageDraw

from wildtrain.data.coco import CocoDataset
from wildtrain.evaluate.matching import matches
from wildtrain.io import atomic_path

FILE = "gallery.png"
COUNT, SIDE = 6, 400  # images in the gallery; each drawn at most SIDE px wide/high
TRUTH, CORRECT, WRONG = (40, 200, 60), (60, 140, 255), (255, 40, 40)  # green truth; blue right, red wrong


def errors_png(path: Path, ds: CocoDataset, images: Path, results: list[dict], conf: float, iou: float,
               count: int = COUNT) -> list[dict]:
    """Draw the `count` images with the most errors into one PNG; return them with their error counts."""
    rows = matches(ds, results, conf, iou)
    wrong = [m for m in rows if m["gt"] is None or m["dt"] is None or m["gt"]["category_id"] != m["dt"]["category_id"]]
    errors = Counter(m["image_id"] for m in wrong)
    worst = [i for i, n in errors.most_common(count) if n > 0]
    by_id = {im["id"]: im for im in ds.images}
    names = dict(zip(ds.category_ids, ds.class_names))
    tiles = []
    for image_id in worst or [im["id"] for im in ds.images[:1]]:
        with Image.open(images / by_id[image_id]["file_name"]) as img:
            canvas = img.convert("RGB")
        draw = ImageDraw.Draw(canvas)
        for m in (m for m in rows if m["image_id"] == image_id):
            if m["gt"] is not None:
                x, y, w, h = m["gt"]["bbox"]
                draw.rectangle([x, y, x + w, y + h], outline=TRUTH, width=2)
            if m["dt"] is not None:
                x, y, w, h = m["dt"]["bbox"]
                ok = m["gt"] is not None and m["gt"]["category_id"] == m["dt"]["category_id"]
                draw.rectangle([x, y, x + w, y + h], outline=CORRECT if ok else WRONG, width=1)
                draw.text((x, max(0, y - 11)), f"{names[m['dt']['category_id']]} {m['dt']['score']:.2f}",
                          fill=CORRECT if ok else WRONG)
        canvas.thumbnail((SIDE, SIDE))
        label = f"{by_id[image_id]['file_name']}: {errors[image_id]} errors"
        tile = Image.new("RGB", (SIDE, SIDE + 16), "white")
        tile.paste(canvas, (0, 16))
        ImageDraw.Draw(tile).text((2, 2), label[:60], fill=(0, 0, 0))
        tiles.append(tile)
    cols = min(3, len(tiles))
    sheet = Image.new("RGB", (cols * SIDE, -(-len(tiles) // cols) * (SIDE + 16)), "white")
    for k, tile in enumerate(tiles):
        sheet.paste(tile, ((k % cols) * SIDE, (k // cols) * (SIDE + 16)))
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
    return [{"file": by_id[i]["file_name"], "errors": errors[i]} for i in worst]
