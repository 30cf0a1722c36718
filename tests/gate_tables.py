"""Per-image evaluation tables with a known answer, for gate tests: N test images with one zebra each; a model
"finds" the images listed (an exact box at a high score) and puts a false positive on the others."""

from __future__ import annotations

from pathlib import Path

from wildtrain.data.coco import CocoDataset
from wildtrain.evaluate import bootstrap
from wildtrain.evaluate.detection import run_cocoeval
from wildtrain.evaluate.detection_table import DetectionTable

BOX = [20.0, 20.0, 40.0, 40.0]


def table(found: list[bool]) -> DetectionTable:
    ims = [{"id": i + 1, "file_name": f"t{i:03d}.png", "width": 100, "height": 100} for i in range(len(found))]
    anns = [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": BOX, "area": 1600, "iscrowd": 0}
            for i in range(len(found))]
    results = [{"image_id": i + 1, "category_id": 1, "bbox": BOX if hit else [60.0, 60.0, 30.0, 30.0],
                "score": 0.9 - 0.001 * i} for i, hit in enumerate(found)]
    ds = CocoDataset(ims, anns, [{"id": 1, "name": "zebra"}])
    return DetectionTable.build(ds, results, run_cocoeval(ds, results), 0.5, lambda im: f"image:{im['file_name']}")


def table_file(folder: Path, found: list[bool], evaluation: str, name: str = "test_tables.npz") -> tuple[Path, float]:
    """(the saved table, its map50_95)."""
    t = table(found)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    bootstrap.save(path, t, {"evaluation_hash": evaluation})
    return path, bootstrap.identity(t)["map50_95"]


def hits(n: int, total: int = 40, offset: int = 0) -> list[bool]:
    """`n` of `total` images found, starting at `offset` (wrapping)."""
    return [((i - offset) % total) < n for i in range(total)]
