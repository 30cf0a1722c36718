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
