from PIL import Image

from wildtrain.data import synthetic
from wildtrain.data.crops import BACKGROUND, crop_box, write_crops
from wildtrain.data.split import split_dataset


def test_crop_box_pads_enforces_min_size_and_stays_inside():
    assert crop_box([10, 10, 20, 10], 100, 100, padding=0.5, min_size=4) == (0, 5, 40, 25)
    left, top, right, bottom = crop_box([50, 50, 2, 2], 100, 100, padding=0.0, min_size=16)
    assert right - left == 16 and bottom - top == 16
    assert crop_box([95, 95, 5, 5], 100, 100, padding=1.0, min_size=4)[2:] == (100, 100)


def test_every_box_becomes_one_crop_and_background_avoids_boxes(tmp_path):
    ds = synthetic.generate(tmp_path / "raw", num_images=8, image_size=128, max_objects=4, empty_fraction=0.25, seed=2)
    splits = split_dataset(ds, 0.25, 0.25, seed=0)
    counts = write_crops(splits, tmp_path / "raw/images", tmp_path / "crops", padding=0.1, min_size=8,
                         background_per_image=1, seed=0)
    for split, sub in splits.items():
        per_class = sub.class_counts()
        for name, n in per_class.items():
            assert counts[split][name] == n == len(list((tmp_path / "crops" / split / name).glob("*.png")))
        assert counts[split][BACKGROUND] == len(list((tmp_path / "crops" / split / BACKGROUND).glob("*.png")))
    crop = next((tmp_path / "crops/train").rglob("*.png"))
    assert Image.open(crop).mode == "RGB" and min(Image.open(crop).size) >= 8
