"""Validation of a user's dataset: every image and box checked, fixed where the policy says, never dropped silently.

Counts reconcile exactly, and the report says where every input went:
  images in = kept + quarantined                 (kept includes negatives: images without boxes)
  boxes  in = kept + dropped,  kept = unchanged + clipped   (clipped: kept boxes moved inside the image)

One scene is one image: files whose decoded pixels are identical are merged (one kept, the others
quarantined as `duplicate_content`, their boxes moved to the kept one), and near-identical ones
(perceptual hash) share a group, so no scene lands in two splits.

Masks (data.masks): a COCO segmentation that cannot be used drops its annotation (`bad_mask`, `mask_size`);
an image of image/mask pairs whose mask is missing, unreadable, of another size or holds values outside the
class list is quarantined. A mask's regions count as annotations in (`masks.regions_from_mask_files`). Masks drawn on
the stored frame of an EXIF-rotated image turn with it, as boxes do.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from wildtrain.data import masks
from wildtrain.data.coco import CocoDataset
from wildtrain.data.duplicates import MAX_DISTANCE, components, near_duplicate_links
from wildtrain.data.formats.mask_pairs import regions
from wildtrain.data.images import normalize_image, orient_box, pixel_digest
from wildtrain.errors import WildtrainError

POLICIES = ("clip", "drop", "fail")
UNANNOTATED = ("negative", "skip")  # images no annotation file mentions: kept as empty images, or quarantined
DUPLICATE_IOU = 0.9  # a twin's box this close to a same-class box of the kept twin is the same animal
EPS = 1e-6  # px: a box this close to the border is inside (float noise from normalized formats)
PARALLEL_FROM = 32  # images; below this a process pool costs more than it saves


def _check_one(src: str, dst: str, mask: str | None = None, n_values: int = 0, ignore: int = masks.IGNORE) -> dict:
    """One image checked and written (data.images), and its mask file read beside it when it has one."""
    info = normalize_image(src, dst)
    if "error" in info or mask is None:
        return info
    found = regions(mask, info["size"], info["stored"], info["orientation"], n_values, ignore)
    if "mask_error" in found:
        Path(dst).unlink(missing_ok=True)
    return {**info, **found}


def _check_images(tasks: list[tuple], workers: int) -> list[dict]:
    if workers > 1 and len(tasks) >= PARALLEL_FROM:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(_check_one, *zip(*tasks), chunksize=8))
    return [_check_one(*t) for t in tasks]


def _group(im: dict, pattern: re.Pattern | None) -> str | None:
    if im.get("group") not in (None, ""):
        return str(im["group"])
    if pattern is not None:
        m = pattern.search(im["file_name"])
        if m:
            return m.group(1) if m.groups() else m.group(0)
    return None


class _Report:
    def __init__(self) -> None:
        self.quarantined: list[dict] = []
        self.dropped: list[dict] = []
        self.clipped: list[dict] = []
        self.normalized: list[dict] = []
        self.rotated: list[dict] = []
        self.merged = 0

    def quarantine(self, im: dict, reason: str, detail: str) -> None:
        self.quarantined.append({"file": str(im.get("file_name")), "reason": reason, "detail": detail})

    def drop(self, file: str, index: int, reason: str, detail: str) -> None:
        self.dropped.append({"file": file, "annotation": index, "reason": reason, "detail": detail})


def _fit_box(box: list[float], w: int, h: int) -> list[float] | None:
    """The part of box inside a w x h image, or None when nothing (or no area) is left."""
    x1, y1 = max(0.0, box[0]), max(0.0, box[1])
    x2, y2 = min(float(w), box[0] + box[2]), min(float(h), box[1] + box[3])
    return [x1, y1, x2 - x1, y2 - y1] if x2 > x1 and y2 > y1 else None


def _same_pixels(readable: list[tuple[dict, dict]]) -> list[list[tuple[dict, dict]]]:
    """Groups of images whose decoded pixels are identical: equal fingerprints, confirmed by a full pixel hash."""
    by_fingerprint: dict[str, list[tuple[dict, dict]]] = defaultdict(list)
    for im, info in readable:
        by_fingerprint[info["fingerprint"]].append((im, info))
    groups = []
    for candidates in (c for c in by_fingerprint.values() if len(c) > 1):
        by_pixels: dict[str, list[tuple[dict, dict]]] = defaultdict(list)
        for im, info in candidates:
            try:
                key = pixel_digest(str(im["_path"]))
            except Exception:  # noqa: BLE001 — decoded a moment ago; if it changed since, it is not called a twin
                key = f"unconfirmed:{im['_path']}"
            by_pixels[key].append((im, info))
        groups += [g for g in by_pixels.values() if len(g) > 1]
    return groups


def _merge_twins(readable: list[tuple[dict, dict]], n_boxes: Counter, rep: _Report,
                 out_images: Path) -> dict[int, tuple[dict, dict, int]]:
    """Files with identical decoded pixels are one scene: keep the twin with the most boxes (then one an annotation
    file mentions, then the first file name), quarantine the others. Returns {twin id: (twin, its info, kept id)}."""
    twin_of = {}
    for group in _same_pixels(readable):
        keep = min((im for im, _ in group), key=lambda im: (-n_boxes[im["id"]], bool(im.get("_unlisted")),
                                                           im["file_name"]))
        for im, info in group:
            if im is keep:
                continue
            n = n_boxes[im["id"]]
            rep.quarantine(im, "duplicate_content", f"same decoded pixels as {keep['file_name']}, which is kept"
                           + (f" (its {n} box(es) are merged into it, repeats dropped)" if n else ""))
            (out_images / im["file_name"]).unlink(missing_ok=True)
            twin_of[im["id"]] = (im, info, keep["id"])
    return twin_of


def _iou(box: list[float], others: np.ndarray) -> np.ndarray:
    """IoU of one [x, y, w, h] box with each row of others (n x 4)."""
    x1, y1 = np.maximum(others[:, 0], box[0]), np.maximum(others[:, 1], box[1])
    x2 = np.minimum(others[:, 0] + others[:, 2], box[0] + box[2])
    y2 = np.minimum(others[:, 1] + others[:, 3], box[1] + box[3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    return inter / (box[2] * box[3] + others[:, 2] * others[:, 3] - inter)


def _add_twin_boxes(pending: dict[tuple[int, str], list], by_image: dict[int, list[dict]], names: dict[int, str],
                    rep: _Report) -> None:
    """Boxes of a quarantined twin join the kept twin's, except those that repeat one of its boxes (same class,
    IoU >= DUPLICATE_IOU; compared with the kept twin's and earlier twins' boxes, not the twin's own)."""
    for (target, file), items in pending.items():
        reference = list(by_image[target])
        for index, record, clip in items:
            same = np.array([r["bbox"] for r in reference if r["category_id"] == record["category_id"]], float)
            best = float(_iou(record["bbox"], same).max()) if len(same) else 0.0
            if best >= DUPLICATE_IOU:
                rep.drop(file, index, "duplicate_box", f"repeats a box of its twin {names[target]} "
                                                       f"(same class, IoU {best:.2f})")
                continue
            by_image[target].append(record)
            rep.merged += 1
            if clip is not None:
                rep.clipped.append(clip)


def _group_near_duplicates(images: list[dict], hashes: list[int | None]) -> list[dict]:
    """Near-identical images (pHash within MAX_DISTANCE bits) get one group, so the split keeps them together.

    An image without a group joins its near-duplicate's group; near-duplicates without any group get
    `near-duplicates:<first file name>`; explicit groups joined by near-duplicates merge ("g1+g2"), since
    keeping the two images together means keeping both groups together. Returns the linking pairs."""
    links = near_duplicate_links(hashes)
    nodes: dict[tuple, int] = {}

    def unit(k: int) -> tuple:
        return ("group", images[k]["group"]) if "group" in images[k] else ("image", k)

    unit_links = [(nodes.setdefault(unit(a), len(nodes)), nodes.setdefault(unit(b), len(nodes)), d)
                  for a, b, d in links]
    units = list(nodes)
    new_group = {}
    for comp in components(unit_links):
        if len(comp) < 2:
            continue  # near-duplicates already in one group
        members = [units[c] for c in comp]
        explicit = sorted(str(v) for kind, v in members if kind == "group")
        first = min((v for kind, v in members if kind == "image"), default=None)
        key = "+".join(explicit) if explicit else f"near-duplicates:{images[first]['file_name']}"
        new_group.update(dict.fromkeys(members, key))
    for k, im in enumerate(images):
        if unit(k) in new_group:
            im["group"] = new_group[unit(k)]
    return [{"files": [images[a]["file_name"], images[b]["file_name"]], "distance": d, "group": images[a]["group"]}
            for a, b, d in links]


def _displayed_segmentation(seg, info: dict, on_stored_frame: bool) -> tuple[object, tuple[str, str] | None]:
    """A COCO segmentation in the displayed frame (compressed RLE or polygons), or why it cannot be used.

    An RLE says its own frame: the stored one of an image turned by EXIF (5-8) is turned with it; any other
    size than the image's is refused. Polygons follow their box (turned when the box was drawn on the stored
    frame)."""
    why = masks.problem(seg)
    if why is not None:
        return None, ("bad_mask", f"has an unusable segmentation: {why}")
    (w_img, h_img), (w_st, h_st), orientation = info["size"], info["stored"], info["orientation"]
    if masks.is_rle(seg):
        size = tuple(seg["size"])
        if size == (h_st, w_st) != (h_img, w_img) and orientation in (5, 6, 7, 8):
            seg = masks.orient(seg, orientation, w_st, h_st)
        elif size != (h_img, w_img):
            return None, ("mask_size", f"has an RLE of {size[1]}x{size[0]} px on a {w_img}x{h_img} image")
    elif on_stored_frame:
        seg = masks.orient(seg, orientation, w_st, h_st)
    return masks.compress(seg), None


def _pattern(policy: str, unannotated: str, ds: CocoDataset, where: str, group_regex: str) -> re.Pattern | None:
    """The settings checked before any file is read; returns data.group_regex compiled."""
    if policy not in POLICIES:
        raise WildtrainError(f"data.invalid_boxes: expected one of {', '.join(POLICIES)}, got '{policy}'")
    if unannotated not in UNANNOTATED:
        raise WildtrainError(f"data.unannotated: expected one of {', '.join(UNANNOTATED)}, got '{unannotated}'")
    if not ds.categories:
        raise WildtrainError(f"{where}: no classes (no category or label found)")
    try:
        return re.compile(group_regex) if group_regex else None
    except re.error as e:
        raise WildtrainError(f"params.yaml: data.group_regex: invalid regular expression ({e})") from None


def _screen_entries(ds: CocoDataset, unannotated: str, rep: _Report) -> list[dict]:
    """Pass 1, the image entries: a bad, repeated or fileless entry is quarantined before its file is read."""
    seen_ids, seen_names, candidates = set(), set(), []
    for im in ds.images:
        if im.get("_problem"):
            rep.quarantine(im, "bad_entry", im["_problem"])
        elif im.get("id") in seen_ids:
            rep.quarantine(im, "duplicate_id", f"image id {im['id']} used twice")
        elif im["file_name"] in seen_names:
            rep.quarantine(im, "duplicate_file_name", f"file name used twice")
        elif im.get("_path") is None:
            rep.quarantine(im, "missing_file", "image file not found")
        elif "_mask" in im and im["_mask"] is None and unannotated == "skip":
            rep.quarantine(im, "missing_mask", "no mask file with its name in the mask folder (data.unannotated: skip)")
        elif im.get("_unlisted") and unannotated == "skip":
            rep.quarantine(im, "unannotated", "no annotation file mentions it (data.unannotated: skip)")
        else:
            candidates.append(im)
        seen_ids.add(im.get("id"))
        seen_names.add(im.get("file_name"))
    return candidates


def _read_images(ds: CocoDataset, candidates: list[dict], out_images: Path, workers: int | None,
                 rep: _Report) -> tuple[list[tuple[dict, dict]], list[dict]]:
    """Pass 2, the files: each image decoded and written (its mask file read beside it); returns the readable
    images with what was read, and the annotations their mask files make (one per region)."""
    n_values, ignore = ds.info.get("_mask_values", 0), ds.info.get("_mask_ignore", masks.IGNORE)
    tasks = [(str(im["_path"]), str(out_images / im["file_name"]), str(im["_mask"]) if im.get("_mask") else None,
              n_values, ignore) for im in candidates]
    checked = _check_images(tasks, workers or min(8, os.cpu_count() or 1))
    readable, from_masks = [], []
    for im, info in zip(candidates, checked):
        if "error" in info:
            rep.quarantine(im, "unreadable", info["error"])
        elif "mask_error" in info:
            rep.quarantine(im, *info["mask_error"])
        else:
            readable.append((im, info))
            from_masks += [{"image_id": im["id"], "category_id": v, "bbox": box, "area": n, "iscrowd": 1,
                            "segmentation": rle} for v, rle, box, n in info.get("regions", [])]
            if info.get("ignore_mask"):
                im["ignore_mask"] = info["ignore_mask"]
    return readable, from_masks


def _check_annotation(a: dict, index: int, file: str, im: dict, info: dict, cat_ids: set, policy: str, bad,
                      rep: _Report) -> tuple[dict, dict | None] | None:
    """One annotation of a kept image: its record (box in the displayed frame, inside the image) and its clip
    record when it was clipped; None when it is dropped (`bad` records why, or raises under policy fail)."""
    if a.get("_problem"):
        return bad("unparseable", a["_problem"])
    if a.get("category_id") not in cat_ids:
        return bad("unknown_class", f"has unknown class {a.get('category_id')!r}")
    box = a.get("bbox")
    if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box)):
        return bad("non_finite", f"has no finite [x, y, w, h] box ({box!r})")
    w_img, h_img = info["size"]
    box = [float(v) for v in box]
    on_stored_frame = False
    if a.get("_normalized"):
        box = [box[0] * w_img, box[1] * h_img, box[2] * w_img, box[3] * h_img]
    elif info["orientation"] in (5, 6, 7, 8) and [im.get("width"), im.get("height")] == info["stored"] != info["size"]:
        box = orient_box(box, info["orientation"], *info["stored"])  # boxes drawn on the stored frame
        on_stored_frame = True
    segmentation = None
    if masks.has_mask(a):
        segmentation, why = _displayed_segmentation(a["segmentation"], info, on_stored_frame)
        if why is not None:
            return bad(*why)
    if box[2] <= 0 or box[3] <= 0:
        return bad("non_positive_size", f"has zero or negative width/height ({box})")
    inside = box[0] >= -EPS and box[1] >= -EPS and box[0] + box[2] <= w_img + EPS and box[1] + box[3] <= h_img + EPS
    if inside and (box[0] < 0 or box[1] < 0 or box[0] + box[2] > w_img or box[1] + box[3] > h_img):
        box = _fit_box(box, w_img, h_img) or box  # float noise (< EPS) from normalized formats: snapped, not counted
    clip = None
    if not inside:
        fitted = _fit_box(box, w_img, h_img)
        detail = f"box {[round(v, 3) for v in box]} outside the {w_img}x{h_img} image"
        if policy == "fail":
            bad("outside_image", detail)
        if fitted is None or policy == "drop":
            rep.drop(file, index, "outside_image", detail + ("" if fitted else " (nothing left after clipping)"))
            return None
        clip = {"file": file, "annotation": index, "before": box, "after": fitted}
        box = fitted
    extra = {k: v for k, v in a.items() if not k.startswith("_") and k not in ("id", "image_id", "bbox", "area")}
    area = a["area"] if inside and isinstance(a.get("area"), (int, float)) else box[2] * box[3]
    record = {**extra, "bbox": box, "area": area, "iscrowd": a.get("iscrowd", 0)}
    if segmentation is not None:
        record["segmentation"] = segmentation
    return record, clip


def _check_annotations(annotations_in: list[dict], kept: dict[int, tuple[dict, dict]],
                       twin_of: dict[int, tuple[dict, dict, int]], quarantined_ids: set, cat_ids: set, policy: str,
                       where: str, rep: _Report) -> dict[int, list[dict]]:
    """Pass 4, the annotations: each checked in its image's frame and kept, clipped or dropped by the policy; a
    quarantined twin's boxes join its kept twin's. Returns the kept records by image id."""
    by_image: dict[int, list[dict]] = {i: [] for i in kept}
    pending: dict[tuple[int, str], list] = defaultdict(list)  # boxes of quarantined twins, for their kept twin
    for index, a in enumerate(annotations_in):
        image_id = a.get("image_id")
        entry, target = kept.get(image_id), image_id
        if entry is None and image_id in twin_of:  # checked in the twin's own frame, then kept on its twin
            twin, twin_info, target = twin_of[image_id]
            entry = (twin, twin_info)
        file = entry[0]["file_name"] if entry else f"<image {image_id}>"

        def bad(reason: str, detail: str) -> None:
            if policy == "fail":
                raise WildtrainError(f"{where}: {file}: annotation {index} {detail} (data.invalid_boxes: fail)")
            rep.drop(file, index, reason, detail)

        if entry is None:
            if image_id in quarantined_ids:
                rep.drop(file, index, "image_quarantined", "its image is quarantined")
            else:
                bad("unknown_image", f"references unknown image id {image_id}")
            continue
        checked = _check_annotation(a, index, file, *entry, cat_ids, policy, bad, rep)
        if checked is None:
            continue
        record, clip = checked
        if target != image_id:
            pending[(target, file)].append((index, record, clip))
            continue
        by_image[image_id].append(record)
        if clip is not None:
            rep.clipped.append(clip)
    _add_twin_boxes(pending, by_image, {i: im["file_name"] for i, (im, _) in kept.items()}, rep)
    return by_image


def _renumber(kept: dict[int, tuple[dict, dict]], by_image: dict[int, list[dict]], pattern: re.Pattern | None,
              rep: _Report) -> tuple[list[dict], list[dict], list[int | None]]:
    """Pass 5, the clean dataset: images sorted by file name and numbered from 1, each with its group and its
    annotations; returns (images, annotations, perceptual hashes in image order)."""
    images, annotations, hashes = [], [], []
    for new_id, (old_id, (im, info)) in enumerate(sorted(kept.items(), key=lambda kv: kv[1][0]["file_name"]), start=1):
        extra = {k: v for k, v in im.items() if not k.startswith("_") and k not in ("id", "file_name", "width", "height")}
        out = {"id": new_id, "file_name": im["file_name"], "width": info["size"][0], "height": info["size"][1], **extra}
        group = _group(im, pattern)
        if group is not None:
            out["group"] = group
        images.append(out)
        hashes.append(info["phash"])
        if info["orientation"] in (2, 3, 4, 5, 6, 7, 8):
            rep.rotated.append({"file": im["file_name"], "orientation": info["orientation"]})
        for a in by_image[old_id]:
            annotations.append({"id": len(annotations) + 1, "image_id": new_id, **a})
    return images, annotations, hashes


def _report(ds: CocoDataset, clean: CocoDataset, near: list[dict], from_masks: list[dict], n_in: int, policy: str,
            unannotated: str, rep: _Report) -> dict:
    """Where every image and box went; the counts reconcile (asserted)."""
    images, annotations = clean.images, clean.annotations
    with_boxes = {a["image_id"] for a in annotations}
    near_files = {f for pair in near for f in pair["files"]}
    n_boxes = Counter(images[a["image_id"] - 1]["file_name"] for a in annotations)
    for pair in near:  # a pair with boxes on one side only is worth a look: one of them is mislabelled
        pair["boxes"] = [n_boxes[f] for f in pair["files"]]
    report = {
        "invalid_boxes": policy,
        "unannotated": unannotated,
        "images": {"in": len(ds.images), "kept": len(images), "quarantined": len(rep.quarantined),
                   "negatives": len(images) - len(with_boxes),
                   "without_annotation_file": sum(1 for im in ds.images if im.get("_unlisted")),
                   "normalized_to_rgb": len(rep.normalized), "exif_rotated": len(rep.rotated),
                   "with_group": sum(1 for im in images if "group" in im),
                   "near_duplicates": len(near_files)},
        "boxes": {"in": n_in, "kept": len(annotations), "unchanged": len(annotations) - len(rep.clipped),
                  "clipped": len(rep.clipped), "merged_from_duplicates": rep.merged, "dropped": len(rep.dropped)},
        "masks": {"annotations_with_mask": sum(1 for a in annotations if masks.has_mask(a)),
                  "regions_from_mask_files": len(from_masks),
                  "images_with_ignore": sum(1 for im in images if im.get("ignore_mask")),
                  "masks_without_image": ds.info.get("_orphan_masks", [])},
        "classes": len(clean.categories),
        "quarantined_by_reason": dict(sorted(Counter(q["reason"] for q in rep.quarantined).items())),
        "dropped_by_reason": dict(sorted(Counter(d["reason"] for d in rep.dropped).items())),
        "quarantined": rep.quarantined, "dropped": rep.dropped, "clipped": rep.clipped,
        "normalized": rep.normalized, "exif_rotated": rep.rotated,
        "near_duplicates": {"max_distance": MAX_DISTANCE, "groups": len({pair["group"] for pair in near}),
                            "pairs": near},
    }
    assert report["images"]["in"] == report["images"]["kept"] + report["images"]["quarantined"]
    assert report["boxes"]["in"] == report["boxes"]["kept"] + report["boxes"]["dropped"]
    return report


def validate(ds: CocoDataset, out_images: Path, policy: str = "clip", group_regex: str = "",
             workers: int | None = None, where: str = "dataset",
             unannotated: str = "skip") -> tuple[CocoDataset, dict]:
    """Check ds (a lenient reader's output), write usable images under out_images, return the clean dataset + report.
    The passes, in order: entries, files, identical twins (pass 3), annotations, the clean dataset, near-duplicates."""
    pattern = _pattern(policy, unannotated, ds, where, group_regex)
    rep = _Report()
    candidates = _screen_entries(ds, unannotated, rep)
    readable, from_masks = _read_images(ds, candidates, out_images, workers, rep)
    annotations_in = [*ds.annotations, *from_masks]  # a mask's regions are annotations like any other
    twin_of = _merge_twins(readable, Counter(a.get("image_id") for a in annotations_in), rep, out_images)
    kept: dict[int, tuple[dict, dict]] = {im["id"]: (im, info) for im, info in readable if im["id"] not in twin_of}
    for im, info in kept.values():
        if info["converted"]:
            rep.normalized.append({"file": im["file_name"], "from_mode": info["mode"]})
    quarantined_ids = {im.get("id") for im in ds.images} - set(kept)
    by_image = _check_annotations(annotations_in, kept, twin_of, quarantined_ids, {c["id"] for c in ds.categories},
                                  policy, where, rep)
    images, annotations, hashes = _renumber(kept, by_image, pattern, rep)
    near = _group_near_duplicates(images, hashes)
    if not images:
        first = rep.quarantined[0] if rep.quarantined else {"file": "-", "detail": "no images"}
        raise WildtrainError(f"{where}: no usable images ({len(rep.quarantined)} quarantined; first: "
                             f"{first['file']}: {first['detail']})")
    clean = CocoDataset(images=images, annotations=annotations, categories=[
        {k: v for k, v in c.items() if not k.startswith("_")} for c in ds.categories],
        info={k: v for k, v in ds.info.items() if not k.startswith("_")})
    return clean, _report(ds, clean, near, from_masks, len(annotations_in), policy, unannotated, rep)


def summary_line(report: dict) -> str:
    im, bx = report["images"], report["boxes"]
    why = ", ".join(f"{n} {r}" for r, n in report["quarantined_by_reason"].items())
    drop = ", ".join(f"{n} {r}" for r, n in report["dropped_by_reason"].items())
    merged = f", {bx['merged_from_duplicates']} merged from duplicate images" if bx["merged_from_duplicates"] else ""
    masked = report.get("masks", {}).get("annotations_with_mask", 0)
    merged += f", {masked} with a mask" if masked else ""
    return (f"images {im['in']} in = {im['kept']} kept ({im['negatives']} without boxes) + {im['quarantined']} "
            f"quarantined{f' ({why})' if why else ''}; {im['without_annotation_file']} without an annotation file "
            f"(data.unannotated: {report['unannotated']}); boxes {bx['in']} in = {bx['kept']} kept ({bx['clipped']} "
            f"clipped{merged}) + {bx['dropped']} dropped{f' ({drop})' if drop else ''}; {im['normalized_to_rgb']} "
            f"converted to RGB, {im['exif_rotated']} EXIF-rotated")


def near_duplicate_warning(report: dict) -> str | None:
    """One line for the console when near-identical images were found (the pairs are in the report)."""
    near = report["near_duplicates"]
    if not near["pairs"]:
        return None
    return (f"{report['images']['near_duplicates']} near-identical images in {near['groups']} group(s) "
            f"({len(near['pairs'])} pair(s) within {near['max_distance']} of 64 perceptual-hash bits): each group is "
            f"kept in one split; check them in the report's near_duplicates")
