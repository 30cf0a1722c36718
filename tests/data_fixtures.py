"""Small datasets written by the tests themselves: images with known boxes, in every supported format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from wildtrain.data.coco import CocoDataset


def noise_image(path: Path, width: int, height: int, seed: int = 0, mode: str = "RGB") -> Path:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr, "RGB")
    img.convert(mode).save(path) if mode != "RGB" else img.save(path)
    return path


def scene_array(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth survey-like scene (low-frequency field + grain): stable under re-encoding, unlike pure noise."""
    rng = np.random.default_rng(seed)
    low = Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)).resize((width, height), Image.BICUBIC)
    grain = rng.integers(-8, 9, (height, width, 3))
    return np.clip(np.asarray(low, dtype=np.int16) + grain, 0, 255).astype(np.uint8)


def canonical(root: Path) -> CocoDataset:
    """Three images (one without boxes) and fractional boxes, non-contiguous category ids; images on disk."""
    images = [{"id": 1, "file_name": "a.png", "width": 64, "height": 48},
              {"id": 2, "file_name": "sub/b.png", "width": 50, "height": 40},
              {"id": 3, "file_name": "empty.png", "width": 30, "height": 30}]
    for k, im in enumerate(images):
        noise_image(root / im["file_name"], im["width"], im["height"], seed=k)
    anns = [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [1.25, 2.5, 10.125, 20.0625]},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [30.3333333333, 0.0, 33.6666666667, 47.9]},
            {"id": 3, "image_id": 2, "category_id": 7, "bbox": [0.1, 0.2, 49.8, 39.7]}]
    for a in anns:
        a.update(area=a["bbox"][2] * a["bbox"][3], iscrowd=0)
    return CocoDataset(images, anns, [{"id": 3, "name": "zebra"}, {"id": 7, "name": "elephant"}])


def boxes_by_label(ds: CocoDataset) -> dict[str, list[tuple[str, list[float]]]]:
    """{image name: sorted [(label, bbox)]}: compares datasets whatever their ids or folder layout."""
    names = dict(zip(ds.category_ids, ds.class_names))
    by_image = ds.annotations_by_image()
    out = {}
    for im in ds.images:
        key = Path(im["file_name"].replace("__", "/")).name
        out[key] = sorted((names[a["category_id"]], a["bbox"]) for a in by_image[im["id"]])
    return out


def assert_same_boxes(a: CocoDataset, b: CocoDataset, tol: float = 1e-6) -> None:
    ba, bb = boxes_by_label(a), boxes_by_label(b)
    assert sorted(ba) == sorted(bb)
    for name in ba:
        assert [lab for lab, _ in ba[name]] == [lab for lab, _ in bb[name]], name
        for (_, x), (_, y) in zip(ba[name], bb[name]):
            assert np.allclose(x, y, atol=tol, rtol=0), (name, x, y)
