"""The annotation loop's pieces without a server: the selection scores, the labelling config, what a reviewer
changed, and the client's one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import free_port
from wildtrain.annotate import select
from wildtrain.annotate.client import Client
from wildtrain.annotate.pull import changes
from wildtrain.annotate.push import config_labels, label_config
from wildtrain.errors import WildtrainError


def test_uncertainty_ranks_borderline_and_many_boxes_first():
    scores = [[0.99, 0.98], [0.5], [], [0.45, 0.55, 0.6], [0.02]]
    assert select.doubt([0.5]) == 1 and select.doubt([0.0, 1.0]) == 0
    assert select.by_uncertainty(scores, 3) == [3, 1, 0]
    assert select.by_uncertainty([[], []], 1) == [0]  # ties keep the source's order


def test_diverse_picks_far_apart_scenes_and_random_is_seeded():
    rng = np.random.default_rng(0)
    dark = [np.full((32, 32, 3), 10, np.uint8) + rng.integers(0, 3, (32, 32, 3), dtype=np.uint8) for _ in range(4)]
    light = [np.full((32, 32, 3), 240, np.uint8)]
    picked = select.by_diversity([select.features(a) for a in dark + light], 2)
    assert 4 in picked and len(set(picked)) == 2
    assert select.by_chance(10, 3, 1) == select.by_chance(10, 3, 1) != select.by_chance(10, 3, 2)


def test_label_config_round_trips_class_names():
    names = ["zebra", 'bird "small"', "<eland>"]
    assert config_labels(label_config(names)) == names


def _box(rid, x, label="zebra"):
    return {"id": rid, "type": "rectanglelabels", "value": {"x": x, "y": 1, "width": 2, "height": 3, "rotation": 0,
                                                            "rectanglelabels": [label]}}


def test_changes_counts_kept_edited_deleted_added():
    task = {"predictions": [{"result": [_box("a", 1), _box("b", 2), _box("c", 3), _box("d", 4)]}],
            "annotations": [{"was_cancelled": False, "result": [_box("a", 1), _box("b", 9), _box("c", 3, "oryx"),
                                                                 _box("new", 5)]}]}
    assert changes(task) == {"kept": 1, "edited": 2, "deleted": 1, "added": 1}


def test_client_errors_are_one_line_naming_the_url(monkeypatch):
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(WildtrainError, match=f"Label Studio at {url} is not reachable"):
        Client(url, "k", timeout=5).whoami()
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    with pytest.raises(WildtrainError, match="set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY"):
        Client.from_env()


def _segmenter_map() -> np.ndarray:
    """30x20 class map: a zebra rectangle (x 5..14, y 4..9) and an oryx L (a 6x6 square less its 3x3 corner)."""
    m = np.zeros((20, 30), np.uint8)
    m[4:10, 5:15] = 1
    m[12:18, 20:26] = 2
    m[12:15, 20:23] = 0
    return m


def test_class_map_to_polygons_known_answer_and_back_to_the_same_mask():
    from wildtrain.annotate import polygons
    from wildtrain.data import masks
    from wildtrain.data.formats.label_studio import polygon

    m = _segmenter_map()
    results = polygons.results(m, ["background", "zebra", "oryx"], "label", "image")
    assert [r["value"]["polygonlabels"] for r in results] == [["zebra"], ["oryx"]]
    assert all(r["type"] == "polygonlabels" and r["original_width"] == 30 and r["original_height"] == 20
               for r in results)
    # the rectangle's outline runs along its pixels' edges (traced 1/8 px inside them), in percent of 30 x 20
    zebra = np.array(results[0]["value"]["points"])
    assert sorted(map(tuple, zebra)) == sorted([(17.0833, 20.625), (17.0833, 49.375), (49.5833, 20.625),
                                                (49.5833, 49.375)])
    anns = [{"category_id": 1 + (r["value"]["polygonlabels"] == ["oryx"]), "bbox": [0, 0, 1, 1],
             "segmentation": [polygon(r["value"]["points"], 30, 20)]} for r in results]
    back = masks.class_map({"height": 20, "width": 30}, anns, [1, 2])
    assert np.array_equal(back, m)  # every pixel, both classes: pre-annotation -> Label Studio -> mask format
    assert polygons.results(np.zeros((5, 5), np.uint8), ["background", "zebra"], "label", "image") == []


def test_blob_scores_are_each_blobs_mean_class_probability():
    from wildtrain.annotate import polygons

    m = _segmenter_map()
    m[0:2, 0:2] = 1  # a second zebra blob
    probs = np.zeros((3, 20, 30), np.float32)
    probs[1, 4:10, 5:15] = 0.5
    probs[1, 0:2, 0:2] = 0.9
    probs[2] = 0.8
    assert sorted(round(s, 4) for s in polygons.blob_scores(m, probs)) == [0.5, 0.8, 0.9]
    assert select.doubt(polygons.blob_scores(m, probs)) == pytest.approx(1 + 0.4 + 0.2)


def test_label_studio_reader_turns_polygons_into_masks(tmp_path):
    import json

    from PIL import Image

    from wildtrain.data import formats

    (tmp_path / "images").mkdir()
    Image.new("RGB", (30, 20)).save(tmp_path / "images" / "a.png")
    poly = {"id": "p1", "type": "polygonlabels", "original_width": 30, "original_height": 20,
            "value": {"points": [[10, 10], [50, 10], [50, 50]], "closed": True, "polygonlabels": ["zebra"]}}
    bad = {**poly, "id": "p2", "value": {"points": [[10, 10], [50, 10]], "polygonlabels": ["zebra"]}}
    task = {"id": 7, "data": {"image": "/data/local-files/?d=images/a.png"},
            "annotations": [{"id": 1, "was_cancelled": False, "result": [poly, bad]}]}
    (tmp_path / "export.json").write_text(json.dumps([task]))
    ds, _ = formats.read(tmp_path, "label_studio", "export.json", "images")
    good, broken = ds.annotations
    assert good["segmentation"] == [[3.0, 2.0, 15.0, 2.0, 15.0, 10.0]] and good["bbox"] == [3.0, 2.0, 12.0, 8.0]
    assert "a polygon without 3 points" in broken["_problem"] and "task 7" in broken["_problem"]


def test_polygon_label_config_and_a_reshaped_polygon_counts_as_edited():
    from wildtrain.annotate.push import config_control

    config = label_config(["zebra"], "PolygonLabels")
    assert config_control(config) == "PolygonLabels" and config_labels(config) == ["zebra"]
    assert config_control(label_config(["zebra"])) == "RectangleLabels"

    def poly(rid, x, label="zebra"):
        return {"id": rid, "type": "polygonlabels", "value": {"points": [[x, 1], [5, 1], [5, 5]],
                                                              "polygonlabels": [label]}}

    task = {"predictions": [{"result": [poly("a", 1), poly("b", 2), poly("c", 3)]}],
            "annotations": [{"was_cancelled": False, "result": [poly("a", 1), poly("b", 2.5), poly("new", 4)]}]}
    assert changes(task) == {"kept": 1, "edited": 1, "deleted": 1, "added": 1}
