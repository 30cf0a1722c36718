import random

from wildtrain.data.coco import CocoDataset
from wildtrain.data.split import split_dataset, split_ids


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


def _grouped(n_groups: int, per_group: int, seed: int = 0) -> CocoDataset:
    rng = random.Random(seed)
    images, anns = [], []
    for g in range(n_groups):
        for k in range(per_group):
            i = len(images) + 1
            images.append({"id": i, "file_name": f"flight{g}/img{k}.jpg", "width": 100, "height": 100,
                           "group": f"flight{g}"})
            for _ in range(rng.randint(0, 3)):
                anns.append({"id": len(anns) + 1, "image_id": i, "category_id": rng.choice([1, 1, 1, 2, 3]),
                             "bbox": [1, 1, 5, 5]})
    # a rare class seen in exactly three groups: it must reach every split
    for g in (2, 5, 8):
        anns.append({"id": len(anns) + 1, "image_id": g * per_group + 1, "category_id": 4, "bbox": [1, 1, 5, 5]})
    return CocoDataset(images, anns, [{"id": c, "name": f"c{c}"} for c in (1, 2, 3, 4)])


def test_groups_never_span_splits_and_rare_classes_reach_every_split():
    ds = _grouped(n_groups=12, per_group=5)
    for seed in range(5):
        splits = split_dataset(ds, 0.2, 0.2, seed)
        groups = {s: {im["group"] for im in sub.images} for s, sub in splits.items()}
        assert not (groups["train"] & groups["val"]) and not (groups["train"] & groups["test"]) \
            and not (groups["val"] & groups["test"])
        assert sum(len(sub.images) for sub in splits.values()) == 60
        for sub in splits.values():
            assert sub.class_counts()["c4"] >= 1  # stratified: the 3-group class is in train, val and test
        assert 6 <= len(splits["test"].images) <= 20 and 6 <= len(splits["val"].images) <= 20


def test_tiles_of_one_image_stay_in_one_split(tmp_path):
    from PIL import Image

    from wildtrain.data.tiling import tile_dataset

    images = [{"id": i, "file_name": f"big{i}.png", "width": 200, "height": 150} for i in range(1, 13)]
    for im in images:
        Image.new("RGB", (200, 150), (im["id"] * 9, 80, 80)).save(tmp_path / im["file_name"])
    anns = [{"id": i, "image_id": i, "category_id": 1, "bbox": [90.0, 60.0, 30.0, 30.0]} for i in range(1, 13)]
    ds = CocoDataset(images, anns, [{"id": 1, "name": "rhino"}])
    tiles = tile_dataset(ds, tmp_path, tmp_path / "tiles", "all", 100, 0.25, 0.3, 1.0, seed=0)
    assert len(tiles.images) == 12 * 6
    ids = split_ids(tiles, 0.25, 0.25, seed=3)
    where = {}
    for split, members in ids.items():
        for tid in members:
            source = tiles.images[tid - 1]["source_file"]
            assert where.setdefault(source, split) == split  # no source image in two splits
    assert set(where.values()) == {"train", "val", "test"}
