"""Readers and writers: hand-written fixtures read to the expected COCO boxes, A -> COCO -> A round trips to 1e-6 px."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from data_fixtures import assert_same_boxes, canonical, noise_image
from wildtrain.data import formats
from wildtrain.data.sources import open_source
from wildtrain.data.validate import validate
from wildtrain.errors import WildtrainError


def read_clean(folder: Path, out: Path, fmt: str = "auto", unannotated: str = "skip"):
    if fmt == "auto":
        fmt, _ = formats.detect(folder, "annotations.json")
    raw, _ = formats.read(folder, fmt, "annotations.json", "images")
    clean, report = validate(raw, out, "fail", unannotated=unannotated)
    return fmt, clean, report


@pytest.mark.parametrize("fmt", formats.BOX_FORMATS)
def test_round_trip_through_coco_keeps_boxes_and_labels(tmp_path, fmt):
    ds = canonical(tmp_path / "src")
    formats.write(ds, tmp_path / "src", tmp_path / "a", fmt)
    got_fmt, first, report = read_clean(tmp_path / "a", tmp_path / "img1")
    assert got_fmt == fmt and report["images"]["kept"] == 3 and report["boxes"]["kept"] == 3
    assert_same_boxes(first, ds)
    formats.write(first, tmp_path / "img1", tmp_path / "coco", "coco")
    _, via_coco, _ = read_clean(tmp_path / "coco", tmp_path / "img2", "coco")
    formats.write(via_coco, tmp_path / "img2", tmp_path / "b", fmt)
    _, back, _ = read_clean(tmp_path / "b", tmp_path / "img3", fmt)
    assert_same_boxes(back, ds)
    assert back.class_names == first.class_names


def test_voc_is_one_based_and_keeps_difficult_truncated(tmp_path):
    noise_image(tmp_path / "JPEGImages" / "x.jpg", 100, 80)
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "x.xml").write_text(
        "<annotation><filename>x.jpg</filename><size><width>100</width><height>80</height></size>"
        "<object><name>kob</name><difficult>1</difficult><truncated>1</truncated>"
        "<bndbox><xmin>11</xmin><ymin>21</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object>"
        "<object><name>topi</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>100</xmax><ymax>80</ymax></bndbox>"
        "</object></annotation>")
    fmt, ds, report = read_clean(tmp_path, tmp_path / "out")
    assert fmt == "voc" and ds.class_names == ["kob", "topi"]
    kob, topi = sorted(ds.annotations, key=lambda a: a["category_id"])
    assert kob["bbox"] == [10.0, 20.0, 20.0, 20.0] and kob["difficult"] == 1 and kob["truncated"] == 1
    assert topi["bbox"] == [0.0, 0.0, 100.0, 80.0] and report["boxes"]["clipped"] == 0  # whole image, inside


def test_voc_with_entities_is_refused_per_file(tmp_path):
    noise_image(tmp_path / "x.jpg", 20, 20)
    (tmp_path / "x.xml").write_text('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                                    "<annotation><filename>x.jpg</filename><object><name>&e;</name></object></annotation>")
    noise_image(tmp_path / "y.jpg", 20, 20, seed=1)
    (tmp_path / "y.xml").write_text("<annotation><filename>y.jpg</filename><object><name>kob</name><bndbox>"
                                    "<xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>")
    raw, _ = formats.read(tmp_path, "voc", "", "images")
    clean, report = validate(raw, tmp_path / "out", "clip")
    assert report["images"]["quarantined"] == 1 and "DTD" in report["quarantined"][0]["detail"]
    assert [im["file_name"] for im in clean.images] == ["y.jpg"]


def test_yolo_names_as_dict_labels_tree_and_image_without_label_file(tmp_path):
    noise_image(tmp_path / "images" / "train" / "p.png", 200, 100)
    noise_image(tmp_path / "images" / "train" / "n.png", 20, 20, seed=1)
    (tmp_path / "labels" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train" / "p.txt").write_text("1 0.5 0.5 0.1 0.2\n0 0.25 0.75 0.5 0.5\n0 0.93 0.9 0.14 0.2\n")
    (tmp_path / "data.yaml").write_text("path: .\ntrain: images/train\nnames:\n  0: hippo\n  1: crane\n")
    fmt, ds, report = read_clean(tmp_path, tmp_path / "out", unannotated="negative")
    assert fmt == "yolo" and ds.class_names == ["hippo", "crane"]
    edge = ds.annotations.pop()  # right edge computes to 200.00000000000003: float noise, snapped, not "clipped"
    assert edge["bbox"][0] + edge["bbox"][2] == 200.0 and edge["bbox"][1] + edge["bbox"][3] == 100.0
    assert report["boxes"]["clipped"] == 0
    boxes = {ds.class_names[ds.category_ids.index(a["category_id"])]: a["bbox"] for a in ds.annotations}
    assert boxes["crane"] == pytest.approx([90.0, 40.0, 20.0, 20.0]) and boxes["hippo"] == pytest.approx([0, 50, 100, 50])
    assert report["images"]["without_annotation_file"] == 1 and report["images"]["negatives"] == 1


def test_csv_negatives_extra_columns_and_groups(tmp_path):
    noise_image(tmp_path / "a.jpg", 40, 40)
    noise_image(tmp_path / "b.jpg", 40, 40, seed=1)
    (tmp_path / "boxes.csv").write_text("image_path,xmin,ymin,xmax,ymax,label,observer,group\n"
                                        "a.jpg,1.5,2,11.5,12,buffalo,ann,flight1\n"
                                        "b.jpg,0,0,0,0,buffalo,bob,flight2\n")
    fmt, ds, report = read_clean(tmp_path, tmp_path / "out")
    assert fmt == "csv" and len(ds.annotations) == 1 and report["images"]["negatives"] == 1
    (a,) = ds.annotations
    assert a["bbox"] == [1.5, 2.0, 10.0, 10.0] and a["attributes"] == {"observer": "ann"}
    assert {im["file_name"]: im["group"] for im in ds.images} == {"a.jpg": "flight1", "b.jpg": "flight2"}
    formats.write(ds, tmp_path / "out", tmp_path / "again", "csv")
    text = (tmp_path / "again" / "annotations.csv").read_text()
    assert "observer" in text.splitlines()[0] and ",ann," in text and "flight2" in text


def test_coco_keeps_extra_fields_and_non_contiguous_ids(tmp_path):
    noise_image(tmp_path / "images" / "a.png", 30, 30)
    noise_image(tmp_path / "images" / "b.png", 30, 30, seed=1)
    coco = {"images": [{"id": 10, "file_name": "a.png", "width": 30, "height": 30, "site": "north"},
                       {"id": 20, "file_name": "b.png", "width": 30, "height": 30}],
            "annotations": [{"id": 5, "image_id": 10, "category_id": 42, "bbox": [1, 2, 3, 4], "iscrowd": 1,
                             "observer": "x"}],
            "categories": [{"id": 42, "name": "oryx", "supercategory": "animal"}, {"id": 7, "name": "eland"}]}
    (tmp_path / "annotations.json").write_text(json.dumps(coco))
    _, ds, report = read_clean(tmp_path, tmp_path / "out")
    assert ds.category_ids == [7, 42] and ds.images[0]["site"] == "north" and report["images"]["negatives"] == 1
    assert ds.annotations[0]["iscrowd"] == 1 and ds.annotations[0]["observer"] == "x"


@pytest.mark.parametrize("layout", ["label_studio", "cvat"])
def test_coco_file_names_relative_to_the_source_or_to_images(tmp_path, layout):
    """Label Studio: result.json beside images/, file_name "images/a.png"; CVAT: bare names under images/."""
    noise_image(tmp_path / "images" / "a.png", 30, 30)
    noise_image(tmp_path / "images" / "b.png", 30, 30, seed=1)
    prefix = "images/" if layout == "label_studio" else ""
    coco = {"images": [{"id": 1, "file_name": f"{prefix}a.png", "width": 30, "height": 30},
                       {"id": 2, "file_name": f"{prefix}b.png", "width": 30, "height": 30}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 0, "bbox": [1, 2, 10, 8]}],
            "categories": [{"id": 0, "name": "zebra"}]}
    name = "result.json" if layout == "label_studio" else "annotations.json"
    (tmp_path / name).write_text(json.dumps(coco))
    fmt, _ = formats.detect(tmp_path, "annotations.json")
    raw, _ = formats.read(tmp_path, fmt, "annotations.json", "images")
    ds, report = validate(raw, tmp_path / "out", "fail")
    assert fmt == "coco" and report["images"]["kept"] == 2 and report["boxes"]["kept"] == 1
    assert report["images"]["in"] == 2 and sorted(im["file_name"] for im in ds.images) == ["a.png", "b.png"]


def test_coco_roboflow_layout_images_beside_the_annotation_file(tmp_path):
    """Roboflow: each split folder holds `_annotations.coco.json` beside its images, bare file names."""
    split = tmp_path / "train"
    noise_image(split / "a_jpg.rf.1.png", 30, 30)
    noise_image(split / "b_jpg.rf.2.png", 30, 30, seed=1)
    coco = {"images": [{"id": 0, "file_name": "a_jpg.rf.1.png", "width": 30, "height": 30},
                       {"id": 1, "file_name": "b_jpg.rf.2.png", "width": 30, "height": 30}],
            "annotations": [{"id": 0, "image_id": 0, "category_id": 1, "bbox": [1, 2, 10, 8], "area": 80,
                             "segmentation": [], "iscrowd": 0}],
            "categories": [{"id": 0, "name": "animals", "supercategory": "none"},
                           {"id": 1, "name": "zebra", "supercategory": "animals"}]}
    (split / "_annotations.coco.json").write_text(json.dumps(coco))
    fmt, ds, report = read_clean(split, tmp_path / "out")
    assert fmt == "coco" and report["images"]["kept"] == 2 and report["boxes"]["kept"] == 1
    assert sorted(im["file_name"] for im in ds.images) == ["a_jpg.rf.1.png", "b_jpg.rf.2.png"]


def _ls_task(tid: int, ref: str, boxes: list, cancelled: bool = False) -> dict:
    result = [{"id": f"r{k}", "type": "rectanglelabels", "from_name": "label", "to_name": "image",
               "original_width": 40, "original_height": 20,
               "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [label]}}
              for k, (label, x, y, w, h) in enumerate(boxes)]
    return {"id": tid, "data": {"image": ref}, "predictions": [],
            "annotations": [{"id": 100 + tid, "result": result, "was_cancelled": cancelled}]}


def test_label_studio_export_reads_reviewed_boxes_in_pixels(tmp_path):
    """Local-files and uploaded images; percent boxes -> pixels; cancelled and unreviewed tasks left out."""
    for k, name in enumerate(("a.png", "b.png", "c.png", "d.png")):
        noise_image(tmp_path / "images" / name, 40, 20, seed=k)
    tasks = [_ls_task(1, "/data/local-files/?d=survey/images/a.png", [("zebra", 10, 20, 50, 25)]),
             _ls_task(2, "/data/upload/3/0a1b2c3d-b.png", [("oryx", 0, 0, 10, 10), ("zebra", 50, 50, 25, 50)]),
             _ls_task(3, "/data/local-files/?d=c.png", [("zebra", 1, 1, 5, 5)], cancelled=True),
             {"id": 4, "data": {"image": "/data/local-files/?d=d.png"}, "annotations": []}]
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    fmt, why = formats.detect(tmp_path, "annotations.json")
    assert fmt == "label_studio" and "export.json" in why
    raw, _ = formats.read(tmp_path, fmt, "annotations.json", "images")
    ds, report = validate(raw, tmp_path / "out", "fail")
    assert report["images"]["kept"] == 2 and report["boxes"]["kept"] == 3
    assert sorted(im["file_name"] for im in ds.images) == ["a.png", "b.png"]
    by_name = {im["file_name"]: im["id"] for im in ds.images}
    a_box = [a["bbox"] for a in ds.annotations if a["image_id"] == by_name["a.png"]]
    assert a_box == [[4.0, 4.0, 20.0, 5.0]] and ds.class_names == ["oryx", "zebra"]


def test_label_studio_export_named_by_data_annotations_and_bad_tasks(tmp_path):
    noise_image(tmp_path / "images" / "a.png", 40, 20)
    (tmp_path / "tasks.json").write_text(json.dumps([_ls_task(1, "/data/local-files/?d=gone.png", [("z", 1, 1, 2, 2)]),
                                                     _ls_task(2, "a.png", [("z", 1, 1, 2, 2)])]))
    fmt, _ = formats.detect(tmp_path, "tasks.json")
    raw, _ = formats.read(tmp_path, fmt, "tasks.json", "images")
    ds, report = validate(raw, tmp_path / "out", "drop")
    assert fmt == "label_studio" and report["images"]["kept"] == 1 and report["images"]["in"] == 2
    (tmp_path / "tasks.json").write_text(json.dumps([{"id": 1}]))
    with pytest.raises(WildtrainError, match="tasks.json: not a Label Studio JSON export"):
        formats.read(tmp_path, "label_studio", "tasks.json", "images")


def test_auto_detect_refuses_ambiguous_and_empty_folders(tmp_path):
    noise_image(tmp_path / "a.png", 10, 10)
    with pytest.raises(WildtrainError, match="no annotations found"):
        formats.detect(tmp_path, "annotations.json")
    (tmp_path / "x.csv").write_text("image_path,xmin,ymin,xmax,ymax,label\n")
    (tmp_path / "d.yaml").write_text("names: [a]\n")
    with pytest.raises(WildtrainError, match="several annotation formats.*set data.format"):
        formats.detect(tmp_path, "annotations.json")


def _pack(folder: Path, archive: Path) -> None:
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for p in sorted(folder.rglob("*")):
                zf.write(p, Path("survey") / p.relative_to(folder))
    else:
        with tarfile.open(archive, "w:gz") as tf:
            tf.add(folder, arcname="survey")


@pytest.mark.parametrize("name", ["data.zip", "data.tar.gz"])
def test_archives_are_read_like_folders(tmp_path, name):
    ds = canonical(tmp_path / "src")
    formats.write(ds, tmp_path / "src", tmp_path / "voc", "voc")
    _pack(tmp_path / "voc", tmp_path / name)
    with open_source(tmp_path / name) as folder:
        fmt, clean, _ = read_clean(folder, tmp_path / "out")
    assert fmt == "voc"
    assert_same_boxes(clean, ds)


@pytest.mark.parametrize("member", ["../evil.txt", "/abs/evil.txt", "a/../../evil.txt"])
@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_archive_members_escaping_the_folder_are_refused(tmp_path, member, kind):
    archive = tmp_path / f"bad.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("ok.txt", "fine")
            zf.writestr(member, "evil")
    else:
        with tarfile.open(archive, "w") as tf:
            info = tarfile.TarInfo(member)  # set by hand: TarFile.add would strip a leading '/'
            info.size = 4
            tf.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(WildtrainError) as e:
        with open_source(archive):
            pass
    assert "refused" in str(e.value) and member in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "evil.txt").exists() and not Path("/abs/evil.txt").exists()


def test_tar_links_are_refused(tmp_path):
    archive = tmp_path / "link.tar"
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo("data/passwd")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(WildtrainError, match="link or special file; refused"):
        with open_source(archive):
            pass


def test_cli_data_convert_writes_the_target_format_and_refuses_unknown_ones(tmp_path):
    import subprocess

    from conftest import pipeline_env
    from test_errors import assert_one_line_error

    ds = canonical(tmp_path / "src")
    formats.write(ds, tmp_path / "src", tmp_path / "csv", "csv")
    env = pipeline_env(Path(__file__).resolve().parents[1])
    cmd = ["python", "-m", "wildtrain.cli", "data", "convert"]
    ok = subprocess.run([*cmd, "--to", "voc", str(tmp_path / "csv"), "--out", str(tmp_path / "voc")], env=env,
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "(csv) ->" in ok.stdout and "(voc)" in ok.stdout, ok.stderr
    _, back, _ = read_clean(tmp_path / "voc", tmp_path / "out")
    assert_same_boxes(back, ds)
    bad = subprocess.run([*cmd, "--to", "pascal", str(tmp_path / "csv"), "-o", str(tmp_path / "x")], env=env,
                         capture_output=True, text=True, timeout=120)
    assert_one_line_error(bad, "'pascal' is not one of 'coco', 'voc', 'yolo', 'csv', 'masks'")
    assert not (tmp_path / "x").exists()
