"""A segmenter's class map as Label Studio polygons (pre-annotations), and Label Studio polygons back as COCO
polygon segmentations (the canonical masks a segmenter trains on: data/masks.py).

Polygons rather than brushes: a polygon result is plain JSON (points in percent of the image) that a reviewer edits
vertex by vertex, and wildtrain's canonical masks already hold COCO polygons, traced by masks.polygons so that a
rasterized polygon traced back lies within 1 px of itself. A brush result is Label Studio's own bit-packed RLE
(label-studio-converter's codec, not COCO's), a dependency or a copy of that codec for no gain in what a reviewer
sees. What a polygon loses: holes (masks.polygons keeps outer outlines only) and blobs under 3 points.
"""

from __future__ import annotations

import numpy as np

TYPE = "polygonlabels"


def results(mask: np.ndarray, class_names: list[str], from_name: str, to_name: str) -> list[dict]:
    """Label Studio polygon results of a class map (0 = background, k = class_names[k]): each blob's outline."""
    from wildtrain.data.masks import polygons

    h, w = mask.shape
    out = []
    for value in (int(v) for v in np.unique(mask) if 0 < v < len(class_names)):
        for poly in polygons(mask == value):
            points = [[round(100 * x / w, 4), round(100 * y / h, 4)] for x, y in zip(poly[0::2], poly[1::2])]
            out.append({"id": f"wt{len(out)}", "type": TYPE, "from_name": from_name, "to_name": to_name,
                        "original_width": w, "original_height": h, "image_rotation": 0,
                        "value": {"points": points, "closed": True, TYPE: [class_names[value]]}})
    return out


def blob_scores(mask: np.ndarray, probs: np.ndarray) -> list[float]:
    """Per blob (a connected region of one class), the mean probability of its class over its pixels: a segmenter's
    counterpart of a box score, so that `select.by_uncertainty` ranks images the same way for both."""
    import cv2

    out = []
    for value in (int(v) for v in np.unique(mask) if v > 0 and v < len(probs)):
        count, labels = cv2.connectedComponents((mask == value).astype(np.uint8), connectivity=8)
        for blob in range(1, count):
            out.append(float(probs[value][labels == blob].mean()))
    return out

