"""The canonical COCO reader refuses what later stages could not trust, one line per problem."""

from __future__ import annotations

import json

import pytest

from wildtrain.data.coco import load_coco
from wildtrain.errors import WildtrainError


@pytest.mark.parametrize("ann, message", [
    ({"image_id": 9, "category_id": 1, "bbox": [1, 1, 2, 2]}, "annotation 5 references unknown image 9"),
    ({"image_id": 1, "category_id": 4, "bbox": [1, 1, 2, 2]}, "annotation 5 has unknown category_id 4"),
    ({"image_id": 1, "category_id": 1, "bbox": [1, "x", 2, 2]}, "annotation 5 has no finite [x, y, w, h] bbox"),
    ({"image_id": 1, "category_id": 1, "bbox": [1, 1, 2]}, "annotation 5 has no finite [x, y, w, h] bbox"),
    ({"image_id": 1, "category_id": 1, "bbox": [1, 1, 0, 2]}, "annotation 5 has zero or negative width/height"),
    ({"image_id": 1, "category_id": 1, "bbox": [1, "2", 3, 4]}, "annotation 5 has no finite [x, y, w, h] bbox"),
    ({"image_id": 1, "category_id": 1, "bbox": [1, None, 3, 4]}, "annotation 5 has no finite [x, y, w, h] bbox"),
    ({"image_id": 1, "category_id": 1, "bbox": [1, 1, float("nan"), 2]}, "annotation 5 has no finite [x, y, w, h] bbox"),
    ({"image_id": 1, "category_id": 1, "bbox": [1, 1, 2, float("inf")]}, "annotation 5 has no finite [x, y, w, h] bbox"),
    ({"image_id": 1, "category_id": 1}, "annotation 5 has no finite [x, y, w, h] bbox"),
    ({"image_id": None, "category_id": 1, "bbox": [1, 1, 2, 2]}, "annotation 5 references unknown image None"),
    ({"image_id": "1", "category_id": 1, "bbox": [1, 1, 2, 2]}, "annotation 5 references unknown image 1"),
    ({"image_id": 1, "bbox": [1, 1, 2, 2]}, "annotation 5 has unknown category_id None"),
])
def test_bad_annotation_is_one_line_naming_it(tmp_path, ann, message):
    good = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0.5, 0.5, 3, 3]}
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 10}],
            "annotations": [good, {"id": 5, **ann}], "categories": [{"id": 1, "name": "kob"}]}
    (tmp_path / "c.json").write_text(json.dumps(coco))
    with pytest.raises(WildtrainError) as e:
        load_coco(tmp_path / "c.json")
    assert str(e.value) == f"{tmp_path / 'c.json'}: {message}"
    coco["annotations"] = [good]
    (tmp_path / "c.json").write_text(json.dumps(coco))
    assert load_coco(tmp_path / "c.json").annotations == [good]


def test_annotation_that_is_not_an_object_is_named(tmp_path):
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 10}],
            "annotations": [[1, 1, 2, 2]], "categories": [{"id": 1, "name": "kob"}]}
    (tmp_path / "c.json").write_text(json.dumps(coco))
    with pytest.raises(WildtrainError, match="annotation that is not an object"):
        load_coco(tmp_path / "c.json")


def test_whole_number_floats_and_bools_are_read_as_before(tmp_path):
    """The vectorized check only decides when to look closer; the exact per-annotation rules decide."""
    anns = [{"id": 1, "image_id": 1.0, "category_id": 1, "bbox": [0, 0, 2, 2]},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [0, 0, True, 2]}]
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 10}],
            "annotations": anns, "categories": [{"id": 1, "name": "kob"}]}
    (tmp_path / "c.json").write_text(json.dumps(coco))
    assert load_coco(tmp_path / "c.json").annotations == anns


def test_big_file_is_read_and_the_collector_is_left_on(tmp_path):
    import gc

    n = 20_000  # > 1 MB of JSON: parsed with the collector paused
    coco = {"images": [{"id": i, "file_name": f"{i}.png", "width": 100, "height": 100} for i in range(1, 101)],
            "annotations": [{"id": k, "image_id": k % 100 + 1, "category_id": 1 + k % 3, "bbox": [1.5, 2, 3, 4.25]}
                            for k in range(n)],
            "categories": [{"id": c, "name": f"c{c}"} for c in (1, 2, 3)]}
    (tmp_path / "c.json").write_text(json.dumps(coco))
    assert gc.isenabled() and (tmp_path / "c.json").stat().st_size > 1 << 20
    ds = load_coco(tmp_path / "c.json")
    assert gc.isenabled()
    assert len(ds.annotations) == n and ds.annotations[7]["bbox"] == [1.5, 2, 3, 4.25]
