"""Pascal VOC XML folders. Pixel convention: VOC's own 1-based inclusive pixel indices.

A VOC box xmin..xmax (1-based, both ends inside the box) is COCO x = xmin - 1, w = xmax - xmin + 1, and back.
`difficult` and `truncated` are kept on the annotation. XML is parsed with a DTD refused outright,
so no entity expansion or external entity can be triggered by a hostile file.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from wildtrain.data.coco import CocoDataset
from wildtrain.data.formats.base import (add_unlisted, categories_from_names, flat_name, image_files, images_dir,
                                         num, relative_name)
from wildtrain.io import link_or_copy, write_text

NAME = "voc"


class VocError(ValueError):
    pass


def parse_xml(path: Path) -> ET.Element:
    data = path.read_bytes()
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise VocError("XML with a DTD or entities is refused")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise VocError(f"unreadable XML ({e})") from None
    if root.tag != "annotation":
        raise VocError(f"root element is <{root.tag}>, not <annotation>")
    return root


def is_voc(path: Path) -> bool:
    try:
        parse_xml(path)
        return True
    except (VocError, OSError):
        return False


def _float(obj: ET.Element, tag: str) -> float:
    text = obj.findtext(tag)
    if text is None:
        raise VocError(f"missing <{tag}>")
    try:
        return float(text)
    except ValueError:
        raise VocError(f"<{tag}> is not a number: {text!r}") from None


def _flag(obj: ET.Element, tag: str) -> int:
    text = (obj.findtext(tag) or "0").strip()
    return 1 if text in ("1", "true", "True") else 0


def read(root: Path, images: str) -> CocoDataset:
    """One XML per image; the image is found by <filename> (next to the XML, in `images`, JPEGImages or anywhere)."""
    jpeg = root / "JPEGImages"
    base = jpeg if jpeg.is_dir() and not (root / images).is_dir() else images_dir(root, images)
    by_name: dict[str, list[Path]] = {}
    for p in image_files(root):
        by_name.setdefault(p.name, []).append(p)
    parsed, names = [], []
    for xml in sorted(root.rglob("*.xml")):
        try:
            node = parse_xml(xml)
            objects = [(o.findtext("name") or "").strip() for o in node.iter("object")]
            names += [n for n in objects if n]
            parsed.append((xml, node, None))
        except (VocError, OSError) as e:
            parsed.append((xml, None, str(e)))
    cats, cat_id = categories_from_names(names)
    images_out, anns = [], []
    for k, (xml, node, problem) in enumerate(parsed, start=1):
        filename = (node.findtext("filename") or "").strip() if node is not None else ""
        if filename:
            candidates = by_name.get(Path(filename).name, [])
        else:
            candidates = [p for ps in by_name.values() for p in ps if p.stem == xml.stem]
        near = [p for p in candidates if p.parent in (xml.parent, base)]
        path = (near or candidates or [None])[0]
        file_name = relative_name(path, base, root) if path else (filename or xml.name)
        im = {"id": k, "file_name": file_name, "_path": path, "annotation_file": relative_name(xml, root, root)}
        if node is None:
            im["_problem"] = f"{xml.name}: {problem}"
            images_out.append(im)
            continue
        size = node.find("size")
        if size is not None:
            try:
                im["width"], im["height"] = int(float(size.findtext("width"))), int(float(size.findtext("height")))
            except (TypeError, ValueError):
                pass
        images_out.append(im)
        for obj in node.iter("object"):
            a = {"image_id": k, "category_id": cat_id.get((obj.findtext("name") or "").strip()),
                 "difficult": _flag(obj, "difficult"), "truncated": _flag(obj, "truncated"), "iscrowd": 0}
            try:
                bb = obj.find("bndbox")
                if bb is None:
                    raise VocError("object without <bndbox>")
                x1, y1, x2, y2 = (_float(bb, t) for t in ("xmin", "ymin", "xmax", "ymax"))
                a["bbox"] = [x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1]
            except VocError as e:
                a["_problem"] = f"{xml.name}: {e}"
            if a["category_id"] is None and "_problem" not in a:
                a["_problem"] = f"{xml.name}: object without a <name>"
            anns.append(a)
    ds = CocoDataset(images=images_out, annotations=anns, categories=cats)
    add_unlisted(ds, base, root)
    return ds


def _sub(parent: ET.Element, tag: str, text: str) -> ET.Element:
    el = ET.SubElement(parent, tag)
    el.text = text
    return el


def write(ds: CocoDataset, image_root: Path, out: Path) -> Path:
    """out/JPEGImages/<image> + out/Annotations/<stem>.xml (one per image, negatives included)."""
    names = dict(zip(ds.category_ids, ds.class_names))
    by_image = ds.annotations_by_image()
    for im in ds.images:
        flat = flat_name(im["file_name"])
        link_or_copy(image_root / im["file_name"], out / "JPEGImages" / flat)
        node = ET.Element("annotation")
        _sub(node, "folder", "JPEGImages")
        _sub(node, "filename", flat)
        size = ET.SubElement(node, "size")
        _sub(size, "width", str(im["width"]))
        _sub(size, "height", str(im["height"]))
        _sub(size, "depth", "3")
        for a in by_image[im["id"]]:
            x, y, w, h = a["bbox"]
            obj = ET.SubElement(node, "object")
            _sub(obj, "name", names[a["category_id"]])
            _sub(obj, "truncated", str(int(a.get("truncated", 0))))
            _sub(obj, "difficult", str(int(a.get("difficult", 0))))
            bb = ET.SubElement(obj, "bndbox")
            for tag, v in (("xmin", x + 1), ("ymin", y + 1), ("xmax", x + w), ("ymax", y + h)):
                _sub(bb, tag, num(v))
        ET.indent(node)
        write_text(out / "Annotations" / (Path(flat).stem + ".xml"), ET.tostring(node, encoding="unicode") + "\n")
    return out / "Annotations"
