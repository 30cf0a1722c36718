from wildtrain.data import synthetic
from wildtrain.tracking.lineage import dataset_hash, hash_tree


def _make(path, seed):
    ds = synthetic.generate(path, num_images=6, image_size=96, max_objects=4, empty_fraction=0.34, seed=seed)
    return ds, hash_tree(path)


def test_same_seed_gives_byte_identical_files(tmp_path):
    ds1, files1 = _make(tmp_path / "a", seed=3)
    ds2, files2 = _make(tmp_path / "b", seed=3)
    assert files1 == files2 and len(files1) == 6
    assert dataset_hash(files1) == dataset_hash(files2)
    assert ds1.to_dict() == ds2.to_dict()


def test_other_seed_gives_other_data(tmp_path):
    _, files1 = _make(tmp_path / "a", seed=3)
    _, files2 = _make(tmp_path / "b", seed=4)
    assert dataset_hash(files1) != dataset_hash(files2)


def test_boxes_inside_images_and_empty_images_present(tmp_path):
    ds, _ = _make(tmp_path / "a", seed=1)
    sizes = {im["id"]: (im["width"], im["height"]) for im in ds.images}
    for a in ds.annotations:
        x, y, w, h = a["bbox"]
        W, H = sizes[a["image_id"]]
        assert 0 <= x and 0 <= y and x + w <= W and y + h <= H and w > 0 and h > 0
    with_boxes = {a["image_id"] for a in ds.annotations}
    assert len(ds.images) - len(with_boxes) >= 2  # floor(6 * 0.34) empty scenes
    assert ds.class_names == [s.name for s in synthetic.SPECIES]
