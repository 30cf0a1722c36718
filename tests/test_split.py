import random

from wildtrain.data.coco import CocoDataset
from wildtrain.data.split import split_ids


def test_split_is_deterministic_disjoint_and_complete(tiny_coco):
    a = split_ids(tiny_coco, 0.2, 0.2, seed=5)
    b = split_ids(tiny_coco, 0.2, 0.2, seed=5)
    assert a == b
    all_ids = [i for ids in a.values() for i in ids]
    assert sorted(all_ids) == sorted(im["id"] for im in tiny_coco.images)  # each image exactly once
    assert len(set(all_ids)) == len(all_ids)
    assert len(a["val"]) == 2 and len(a["test"]) == 2 and len(a["train"]) == 6


def test_split_ignores_input_order_but_follows_seed(tiny_coco):
    shuffled = list(tiny_coco.images)
    random.Random(0).shuffle(shuffled)
    other = CocoDataset(shuffled, tiny_coco.annotations, tiny_coco.categories)
    assert split_ids(other, 0.2, 0.2, seed=5) == split_ids(tiny_coco, 0.2, 0.2, seed=5)
    assert any(split_ids(tiny_coco, 0.2, 0.2, seed=s) != split_ids(tiny_coco, 0.2, 0.2, seed=5) for s in range(6, 12))
