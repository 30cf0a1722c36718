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
