"""A deterministic generator of aerial-survey-like scenes, so the pipeline runs with no download.

Textured ground, four animal-like classes of different sizes, shapes and colours seen from above
(with shadows), small objects and some empty images. Same seed -> byte-identical PNG files. Each animal also
has its exact mask (an RLE of the pixels its sprite covers), so the same scenes train the segmenter: background
plus one class per species.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from wildtrain.data.coco import CocoDataset
from wildtrain.data.masks import encode as encode_mask


@dataclass(frozen=True)
class Species:
    name: str
    length: tuple[int, int]  # body length range in px
    aspect: float  # width / length
    colour: tuple[int, int, int]
    pattern: str  # plain | stripes | wings


SPECIES = (
    Species("elephant", (34, 52), 0.55, (120, 116, 112), "plain"),
    Species("zebra", (20, 30), 0.40, (235, 235, 235), "stripes"),
    Species("antelope", (12, 18), 0.45, (176, 104, 48), "plain"),
    Species("bird", (9, 13), 1.0, (250, 250, 245), "wings"),
)


def _ground(rng: np.random.Generator, size: int) -> Image.Image:
    """Savanna-like ground: a base colour, smooth low-frequency patches, fine grain and some bushes."""
    base = np.array(rng.choice([(150, 140, 90), (120, 130, 80), (170, 150, 110)]), dtype=np.float32)
    img = np.ones((size, size, 3), np.float32) * base
    for cells, amp in ((4, 28.0), (16, 14.0), (size // 2, 8.0)):
        noise = rng.normal(0, 1, (cells, cells)).astype(np.float32)
        up = np.asarray(Image.fromarray(noise, mode="F").resize((size, size), Image.BILINEAR))
        img += up[..., None] * amp
    ground = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(ground)
    for _ in range(int(rng.integers(3, 12))):  # dark bushes: distractors that are not animals
        x, y = rng.uniform(0, size, 2)
        r = float(rng.uniform(3, 10))
        g = int(rng.integers(50, 80))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(g - 20, g + 10, g - 30))
    return ground.filter(ImageFilter.GaussianBlur(0.6))


def _animal(rng: np.random.Generator, sp: Species) -> tuple[Image.Image, float]:
    """An RGBA sprite of one animal (body + head, pattern) and its rotation angle."""
    length = int(rng.integers(sp.length[0], sp.length[1] + 1))
    width = max(3, int(round(length * sp.aspect)))
    pad = 4
    sprite = Image.new("RGBA", (length + 2 * pad, length + 2 * pad), (0, 0, 0, 0))
    d = ImageDraw.Draw(sprite)
    cx = cy = (length + 2 * pad) / 2
    jitter = rng.integers(-12, 13, 3)
    colour = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(sp.colour, jitter)) + (255,)
    if sp.pattern == "wings":
        d.polygon([(cx - length / 2, cy), (cx, cy - width / 5), (cx + length / 2, cy), (cx, cy + width / 5)], fill=colour)
        d.ellipse([cx - 2, cy - length / 3, cx + 2, cy + length / 3], fill=colour)
    else:
        d.ellipse([cx - length / 2, cy - width / 2, cx + length / 2 * 0.8, cy + width / 2], fill=colour)
        head = width * 0.45
        d.ellipse([cx + length / 2 * 0.6, cy - head / 2, cx + length / 2 * 0.6 + head, cy + head / 2], fill=colour)
        if sp.pattern == "stripes":
            for k in range(-3, 4):
                x = cx + k * length / 9
                d.line([(x, cy - width / 2), (x, cy + width / 2)], fill=(20, 20, 20, 255), width=2)
    angle = float(rng.uniform(0, 360))
    return sprite.rotate(angle, resample=Image.NEAREST, expand=True), angle


def _overlaps(box: tuple[float, float, float, float], boxes: list, margin: float = 2.0) -> bool:
    x, y, w, h = box
    for bx, by, bw, bh in boxes:
        if x < bx + bw + margin and bx < x + w + margin and y < by + bh + margin and by < y + h + margin:
            return True
    return False


def render_masked_scene(rng: np.random.Generator, size: int, n_objects: int
                        ) -> tuple[Image.Image, list[tuple[int, list[float]]], list[np.ndarray]]:
    """One scene, its annotations as (species index, [x, y, w, h]) in pixels, and each animal's mask (the
    pixels its sprite covers: boolean size x size arrays; animals never overlap, shadows are ground)."""
    img = _ground(rng, size)
    anns: list[tuple[int, list[float]]] = []
    masks: list[np.ndarray] = []
    boxes: list = []
    for _ in range(n_objects):
        k = int(rng.integers(len(SPECIES)))
        sprite, _ = _animal(rng, SPECIES[k])
        alpha = sprite.getchannel("A")
        l, t, r, b = alpha.getbbox()
        for _attempt in range(20):
            ox = int(rng.integers(-l, size - r + 1))
            oy = int(rng.integers(-t, size - b + 1))
            box = (float(ox + l), float(oy + t), float(r - l), float(b - t))
            if not _overlaps(box, boxes):
                break
        else:
            continue
        shadow = Image.new("RGBA", sprite.size, (0, 0, 0, 0))
        shadow.putalpha(alpha.point(lambda a: 90 if a else 0))
        img.paste(shadow, (ox + 2, oy + 2), shadow)
        img.paste(sprite, (ox, oy), sprite)
        boxes.append(box)
        anns.append((k, list(box)))
        mask = np.zeros((size, size), bool)
        mask[oy + t:oy + b, ox + l:ox + r] = np.asarray(alpha)[t:b, l:r] > 0
        masks.append(mask)
    return img, anns, masks


def render_scene(rng: np.random.Generator, size: int, n_objects: int) -> tuple[Image.Image, list[tuple[int, list[float]]]]:
    """One scene and its annotations as (species index, [x, y, w, h]) in pixels."""
    img, anns, _ = render_masked_scene(rng, size, n_objects)
    return img, anns


def generate(out_dir: str | Path, num_images: int, image_size: int, max_objects: int,
             empty_fraction: float, seed: int, images_subdir: str = "images") -> CocoDataset:
    """Write `num_images` PNG scenes under out_dir/images and return their COCO dataset (1-based ids)."""
    out_dir = Path(out_dir)
    (out_dir / images_subdir).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    n_empty = int(math.floor(num_images * empty_fraction))
    empty = set(rng.choice(num_images, size=n_empty, replace=False).tolist()) if n_empty else set()
    for i in range(num_images):
        scene_rng = np.random.default_rng([seed, i])
        n = 0 if i in empty else int(scene_rng.integers(1, max_objects + 1))
        img, anns, masks = render_masked_scene(scene_rng, image_size, n)
        name = f"scene_{i:05d}.png"
        img.save(out_dir / images_subdir / name, format="PNG", optimize=False)
        images.append({"id": i + 1, "file_name": name, "width": image_size, "height": image_size})
        for (k, (x, y, w, h)), mask in zip(anns, masks):
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": k + 1,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0,
                                "segmentation": encode_mask(mask)})
    categories = [{"id": k + 1, "name": sp.name, "supercategory": "animal"} for k, sp in enumerate(SPECIES)]
    return CocoDataset(images=images, annotations=annotations, categories=categories)
