import numpy as np
import yaml
from PIL import Image

from wildtrain.data.coco import CocoDataset
from wildtrain.data.yolo_layout import coco_to_yolo_lines, write_labels, write_yolo_layout, yolo_line_to_coco_box


def test_boxes_round_trip_within_1e_6_px_on_large_images():
    rng = np.random.default_rng(0)
    images = [{"id": 1, "file_name": "big.jpg", "width": 8000, "height": 6000},
              {"id": 2, "file_name": "small.jpg", "width": 333, "height": 77}]
    anns = []
    for i in range(500):
        im = images[i % 2]
        x, y = rng.uniform(0, im["width"] - 50), rng.uniform(0, im["height"] - 30)
        anns.append({"id": i + 1, "image_id": im["id"], "category_id": [5, 9][i % 2],
                     "bbox": [x, y, rng.uniform(0.5, 50), rng.uniform(0.5, 30)]})
    ds = CocoDataset(images, anns, [{"id": 9, "name": "zebra"}, {"id": 5, "name": "eland"}])
    lines = coco_to_yolo_lines(ds)
    size = {im["id"]: (im["width"], im["height"]) for im in images}
    got = {1: [], 2: []}
    for image_id, text in lines.items():
        for line in text.splitlines():
            got[image_id].append(yolo_line_to_coco_box(line, *size[image_id]))
    for image_id in (1, 2):
        expected = [a for a in anns if a["image_id"] == image_id]
        assert len(got[image_id]) == len(expected)
        for (cls, box), a in zip(got[image_id], expected):
            assert ds.category_ids[cls] == a["category_id"]  # non-contiguous ids map through the index
            assert np.max(np.abs(np.array(box) - np.array(a["bbox"]))) < 1e-6


def test_layout_has_images_labels_and_yaml(tmp_path, tiny_coco):
    src = tmp_path / "src"
    src.mkdir()
    for im in tiny_coco.images:
        Image.new("RGB", (im["width"], im["height"])).save(src / im["file_name"])
    splits = {"train": tiny_coco.subset({1, 2, 3, 4, 5, 6}), "val": tiny_coco.subset({7, 8}),
              "test": tiny_coco.subset({9, 10})}
    yaml_path = write_yolo_layout(splits, src, tmp_path / "yolo")
    cfg = yaml.safe_load(yaml_path.read_text())
    assert cfg["names"] == {0: "a", 1: "b", 2: "c"} and "path" not in cfg
    assert len(list((tmp_path / "yolo/images/train").iterdir())) == 6
    assert len(list((tmp_path / "yolo/labels/val").glob("*.txt"))) == 2
    n_lines = sum(len(p.read_text().splitlines()) for p in (tmp_path / "yolo/labels").rglob("*.txt"))
    assert n_lines == len(tiny_coco.annotations)


def _reference_lines(ds: CocoDataset) -> dict[int, str]:
    """The obvious per-annotation loop the vectorized writer must match character for character."""
    index = {cid: i for i, cid in enumerate(ds.category_ids)}
    size = {im["id"]: (im["width"], im["height"]) for im in ds.images}
    out = {im["id"]: "" for im in ds.images}
    for a in ds.annotations:
        (w, h), (x, y, bw, bh) = size[a["image_id"]], a["bbox"]
        out[a["image_id"]] += (f"{index[a['category_id']]} {(x + bw / 2) / w:.12g} {(y + bh / 2) / h:.12g} "
                               f"{bw / w:.12g} {bh / h:.12g}\n")
    return out


def test_vectorized_labels_match_the_plain_loop_for_shuffled_annotations(tmp_path):
    rng = np.random.default_rng(3)
    images = [{"id": int(i), "file_name": f"sub/img{i}.jpg", "width": int(rng.integers(50, 5000)),
               "height": int(rng.integers(50, 5000))} for i in rng.permutation(np.arange(7, 500, 7))]
    anns = [{"id": k, "image_id": images[int(rng.integers(0, len(images) - 5))]["id"],  # last 5 images: negatives
             "category_id": int(rng.choice([42, 3, 17])), "bbox": [float(rng.uniform(0, 40)), int(rng.integers(0, 40)),
                                                                    float(rng.uniform(0.1, 9)), 2]}
            for k in range(3000)]
    ds = CocoDataset(images, anns, [{"id": 42, "name": "a"}, {"id": 3, "name": "b"}, {"id": 17, "name": "c"}])
    expected = _reference_lines(ds)
    assert coco_to_yolo_lines(ds) == expected
    assert sum(text == "" for text in expected.values()) >= 5
    write_labels(ds, tmp_path / "labels", batch=16)  # many batches across the writer threads
    files = sorted(p.name for p in (tmp_path / "labels").iterdir())
    assert files == sorted(f"sub__img{im['id']}.txt" for im in images)
    for im in images:
        assert (tmp_path / "labels" / f"sub__img{im['id']}.txt").read_text() == expected[im["id"]]


def test_labels_of_a_dataset_without_annotations_are_empty_files(tmp_path):
    ds = CocoDataset([{"id": 1, "file_name": "a.jpg", "width": 5, "height": 5}], [], [{"id": 1, "name": "a"}])
    assert coco_to_yolo_lines(ds) == {1: ""}
    write_labels(ds, tmp_path / "labels")
    assert (tmp_path / "labels" / "a.txt").read_text() == ""


def test_a_label_file_that_cannot_be_written_is_one_line_naming_it(tmp_path):
    import pytest

    from wildtrain.errors import WildtrainError

    long_name = "x" * 300 + ".jpg"  # longer than any file system allows for one name
    ds = CocoDataset([{"id": 1, "file_name": "ok.jpg", "width": 5, "height": 5},
                      {"id": 2, "file_name": long_name, "width": 5, "height": 5}], [], [{"id": 1, "name": "a"}])
    with pytest.raises(WildtrainError) as e:
        write_labels(ds, tmp_path / "labels")
    assert str(e.value) == f"{tmp_path / 'labels' / ('x' * 300)}.txt: cannot write label file (File name too long)"
