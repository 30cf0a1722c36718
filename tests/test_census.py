"""Census-grade prediction (issue 24): no cap on an image's total, large rasters streamed window by window with
their nodata/alpha left out, density on the surveyed footprint, one count per animal seen in two frames.

Counting is checked exactly with a detector of red squares (its animals are known: the squares drawn); the
end-to-end checks run the real `predict` with a real YOLO11n model folder (random weights) on files on disk."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from wildtrain.contract import Detections, ModelCard
from wildtrain.prediction import raster
from wildtrain.prediction.sources import Item
from wildtrain.prediction.writers import Outputs
from wildtrain.slicing import intersection_over_smaller, merge, predict_sliced

RES = 0.1  # m per pixel
ORIGIN = (500000.0, 8000000.0)  # UTM 33S
CRS = "EPSG:32733"


def red_squares(image: np.ndarray, max_det: int = 300) -> Detections:
    """A real (if simple) detector: connected red regions, best (largest) first, at most max_det per image."""
    arr = image.astype(int)
    labels, _ = ndimage.label((arr[..., 0] > 200) & (arr[..., 1] < 60))
    boxes = [[float(s[1].start), float(s[0].start), float(s[1].stop - s[1].start), float(s[0].stop - s[0].start)]
             for s in ndimage.find_objects(labels)]
    boxes.sort(key=lambda b: -b[2] * b[3])
    boxes = boxes[:max_det]
    return Detections(boxes, [0] * len(boxes), [min(0.99, b[2] * b[3] / 400) for b in boxes], 1,
                      int(len(boxes) >= max_det))


def field(width: int, height: int, spacing: int = 40, side: int = 8, offset: int = 12) -> tuple[np.ndarray, list]:
    """Ground with a red square every `spacing` px: (image, [(x, y) top-left of each square])."""
    img = np.full((height, width, 3), 90, np.uint8)
    img[..., 1] = 120
    where = [(x, y) for y in range(offset, height - side, spacing) for x in range(offset, width - side, spacing)]
    for x, y in where:
        img[y:y + side, x:x + side] = (255, 0, 0)
    return img, where


def card(names=("kob",)) -> ModelCard:
    return ModelCard(family="detector", task="object-detection", framework="yolo", architecture="test",
                     class_names=list(names), weights="", input={"size": 160, "image_size": 160})


def geotiff(path, image: np.ndarray, origin=ORIGIN, alpha: np.ndarray | None = None, block: int = 128):
    import rasterio
    from rasterio.transform import from_origin

    bands = np.moveaxis(image, -1, 0)
    if alpha is not None:
        bands = np.concatenate([bands, alpha[None].astype(np.uint8) * 255])
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=image.shape[1], height=image.shape[0], count=len(bands),
                       dtype="uint8", crs=CRS, transform=from_origin(*origin, RES, RES), tiled=True,
                       blockxsize=block, blockysize=block, **({"photometric": "RGB", "alpha": "YES"}
                                                              if alpha is not None else {})) as dst:
        dst.write(bands)
    return path


def brute_force_merge(boxes, classes, scores, ios):
    """The greedy merge comparing every pair (what slicing.merge did before its grid)."""
    xywh = np.asarray(boxes, float)
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    cls, score = np.asarray(classes), np.asarray(scores, float)
    used, out = np.zeros(len(xyxy), bool), []
    for i in np.argsort(-score, kind="stable"):
        if used[i]:
            continue
        group = np.flatnonzero(~used & (cls == cls[i]))
        group = group[intersection_over_smaller(xyxy[i], xyxy[group]) >= ios]
        used[group] = used[i] = True
        u = np.concatenate([xyxy[group, :2].min(0), xyxy[group, 2:].max(0)])
        out.append((int(cls[i]), float(score[i]), *np.round(u, 9).tolist()))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_grid_merge_equals_comparing_every_pair(seed):
    rng = np.random.default_rng(seed)
    n = 600
    centres = rng.uniform(0, 2000, (n // 3, 2)).repeat(3, axis=0) + rng.normal(0, 4, (n, 2))  # clusters of 3
    sizes = rng.uniform(2, 60, (n, 2)) * (rng.uniform(size=(n, 1)) < 0.05) * 6 + rng.uniform(4, 30, (n, 2))
    boxes = np.concatenate([centres - sizes / 2, sizes], axis=1).tolist()
    classes, scores = rng.integers(0, 3, n).tolist(), rng.uniform(size=n).tolist()
    got = merge(boxes, classes, scores, 0.5)
    want = brute_force_merge(boxes, classes, scores, 0.5)
    assert len(got.boxes) == len(want) < n
    assert [(c, s, *np.round([b[0], b[1], b[0] + b[2], b[1] + b[3]], 9).tolist())
            for b, c, s in zip(got.boxes, got.classes, got.scores)] == want


def test_an_image_holds_more_than_max_det_animals_and_a_binding_limit_is_counted():
    image, squares = field(1600, 1200)
    assert len(squares) > 1000
    sizes = [160]

    def predict(max_det):
        return lambda arrays: [red_squares(a, max_det) for a in arrays]

    full = predict_sliced(predict(300), [image], sizes, overlap=0.2, merge_ios=0.5, max_det=300, batch=16)[0]
    assert len(full.boxes) == len(squares)  # every animal once: no cap on the image's total
    assert sorted((int(b[0]), int(b[1]), b[2], b[3]) for b in full.boxes) == sorted(
        (x, y, 8.0, 8.0) for x, y in squares)
    assert full.capped == 0 and full.windows == len(raster.windows(1600, 1200, 160, 0.2))

    few = predict_sliced(predict(5), [image], sizes, overlap=0.2, merge_ios=0.5, max_det=5, batch=16)[0]
    views = [image[t:b, l:r] for l, t, r, b in raster.windows(1600, 1200, 160, 0.2)]
    assert few.capped == sum(len(red_squares(v, 10 ** 6).boxes) >= 5 for v in views) > 0
    assert len(few.boxes) < len(squares)  # the limit bound: the report must say so (next test)


def test_report_says_where_max_det_bound(tmp_path):
    out = Outputs(tmp_path, card(), draw=False, max_det=5)
    image, _ = field(400, 300)
    out.add(Item("a.png", tmp_path / "a.png"), image, None, Detections([[1, 1, 2, 2]] * 5, [0] * 5, [0.5] * 5, 12, 3))
    out.add(Item("b.png", tmp_path / "b.png"), image, None, Detections([], [], [], 4, 0))
    report = out.close({})
    assert report["limits"]["windows"] == 16 and report["limits"]["windows_at_max_det"] == 3
    assert report["limits"]["images_at_max_det"] == {"a.png": 3} and "raise --max-det" in report["limits"]["note"]


@pytest.mark.parametrize("chunk", [128, 4096])
def test_streamed_raster_skips_what_lies_outside_the_footprint(tmp_path, monkeypatch, chunk):
    """Alpha 0 on the left 300 columns: its squares are not counted, its windows not predicted, its pixels not
    surveyed. The rest: exactly what the in-memory sliced prediction finds there."""
    monkeypatch.setattr(raster, "CHUNK", chunk)
    image, squares = field(1000, 700)
    valid = np.ones((700, 1000), bool)
    valid[:, :300] = False
    path = geotiff(tmp_path / "ortho.tif", image, alpha=valid)
    r = raster.open_raster(Item("ortho.tif", path))
    assert r is not None and r.masked and r.block == (128, 128) and r.bands == [1, 2, 3]
    det, scan = raster.detect(lambda arrays: [red_squares(a) for a in arrays], r, 160, overlap=0.2, merge_ios=0.5,
                              batch=8, draw=True)
    inside = sorted((x, y) for x, y in squares if valid[y + 4, x + 4])
    assert sorted((int(b[0]), int(b[1])) for b in det.boxes) == inside
    assert scan.valid_pixels == 700 * 700 and scan.windows_skipped > 0 and scan.outside > 0
    assert scan.windows + scan.windows_skipped == len(raster.windows(1000, 700, 160, 0.2))

    out = Outputs(tmp_path / "out", card(), draw=True, max_det=300)
    out.add_raster(r.item, r, det, scan)
    assert scan.step == 1 and (scan.preview == image).all()  # the --draw copy: every pixel, read chunk by chunk
    assert (tmp_path / "out" / "draw" / "ortho.jpg").is_file()
    report = out.close({})
    c = report["census"]
    assert c["total"] == len(inside) and c["raw"] == {"kob": len(inside)}
    assert c["area_ha"] == pytest.approx(700 * 700 * RES * RES / 1e4)  # the footprint, not the 1000 px rectangle
    assert c["density_per_km2"]["kob"] == pytest.approx(len(inside) / (700 * 700 * RES * RES / 1e6), rel=1e-4)
    assert report["streamed"]["ortho.tif"]["boxes_dropped_outside_footprint"] == scan.outside
    rows = (tmp_path / "out" / "census.csv").read_text().splitlines()
    assert rows[0].startswith("scope,name,area_km2,area_ha,kob,total") and rows[-1].startswith("survey,")


def test_overlapping_frames_count_an_animal_once_and_areas_give_density(tmp_path):
    """Two frames of one flight, 1000 x 600 px each, the second 600 px east of the first: 400 px shared."""
    import pyogrio.raw
    import shapely

    scene, squares = field(1600, 600, spacing=50, offset=20)
    frames = [(0, "f1.tif"), (600, "f2.tif")]
    out = Outputs(tmp_path / "out", card(), draw=False, areas=None, merge_ios=0.5)
    seen = 0
    for dx, name in frames:
        path = geotiff(tmp_path / name, np.ascontiguousarray(scene[:, dx:dx + 1000]),
                       origin=(ORIGIN[0] + dx * RES, ORIGIN[1]))
        r = raster.open_raster(Item(name, path))
        det, scan = raster.detect(lambda arrays: [red_squares(a) for a in arrays], r, 160, overlap=0.2,
                                  merge_ios=0.5, batch=8)
        out.add_raster(r.item, r, det, scan)
        seen += sum(dx <= x and x + 8 <= dx + 1000 for x, _ in squares)
    # strata: the west and the east half of the survey, as a GeoPackage in the survey's CRS
    areas = tmp_path / "strata.gpkg"
    halves = [shapely.box(ORIGIN[0], ORIGIN[1] - 60, ORIGIN[0] + 80, ORIGIN[1]),
              shapely.box(ORIGIN[0] + 80, ORIGIN[1] - 60, ORIGIN[0] + 200, ORIGIN[1])]
    pyogrio.raw.write(areas, shapely.to_wkb(np.asarray(halves, object)), [np.asarray(["west", "east"], object)],
                      ["name"], driver="GPKG", geometry_type="Polygon", crs=CRS)
    out.areas_file = areas
    report = out.close({})
    c = report["census"]
    assert c["frames_overlap"] and c["raw"]["kob"] == seen > len(squares)
    assert c["total"] == len(squares)  # each animal once
    assert c["area_ha"] == pytest.approx(1600 * 600 * RES * RES / 1e4)  # the union of the footprints
    west = sum(x + 4 < 800 for x, _ in squares)
    assert c["areas"]["west"]["total"] == west and c["areas"]["east"]["total"] == len(squares) - west
    assert c["areas"]["west"]["area_ha"] == pytest.approx(0.48) and c["areas"]["east"]["area_ha"] == pytest.approx(0.48)
    assert c["areas"]["west"]["density_per_km2"]["kob"] == pytest.approx(west / 0.0048, rel=1e-4)
    meta, _, _, fields = pyogrio.raw.read(tmp_path / "out" / "detections.gpkg", layer="detections")
    assert len(fields[0]) == seen and int(fields[list(meta["fields"]).index("counted")].sum()) == len(squares)
    layers = [name for name, _ in pyogrio.list_layers(tmp_path / "out" / "detections.gpkg")]
    assert sorted(layers) == ["areas", "detections", "footprints"]


def test_bad_areas_file_and_unknown_class_are_one_line(tmp_path):
    from wildtrain.errors import WildtrainError

    bad = tmp_path / "strata.gpkg"
    bad.write_text("not a geopackage")
    with pytest.raises(WildtrainError, match="--areas .*strata.gpkg"):
        Outputs(tmp_path / "o", card(), draw=False, areas=bad)
    with pytest.raises(WildtrainError, match="--classes: unknown class 'zebra'"):
        Outputs(tmp_path / "o", card(), draw=False, classes="kob,zebra")


# --- end to end: the real predict, a real YOLO11n model folder ------------------------------------------------------

@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from tiny_models import yolo_detector

    from wildtrain import env

    folder = tmp_path_factory.mktemp("census_model")
    env.configure(folder)
    return yolo_detector(folder)


def mosaic(tiles: int, size: int = 320, per_scene: int = 20) -> tuple[np.ndarray, int]:
    """The synthetic generator's scenes side by side: (image, number of animals drawn)."""
    from wildtrain.data.synthetic import render_scene

    rng = np.random.default_rng(5)
    rows, animals = [], 0
    for _ in range(tiles):
        row = []
        for _ in range(tiles):
            img, objects = render_scene(rng, size, per_scene)
            row.append(np.asarray(img.convert("RGB")))
            animals += len(objects)
        rows.append(np.concatenate(row, axis=1))
    return np.ascontiguousarray(np.concatenate(rows, axis=0)), animals


def test_predict_end_to_end_uncapped_streamed_and_robust(model_dir, tmp_path):
    """A 1,280 px GeoTIFF mosaic of 16 scenes (> 300 animals), the same pixels as a PNG, a text file named bad.jpg.
    The GeoTIFF is streamed, the PNG read whole: the same boxes. Neither total stops at max_det."""
    import csv

    from PIL import Image

    from wildtrain.params import Params
    from wildtrain.pipeline.predict import predict

    image, animals = mosaic(4)
    assert animals > 300
    src = tmp_path / "survey"
    geotiff(src / "mosaic.tif", image, block=256)
    Image.fromarray(image).save(src / "mosaic_copy.png")
    (src / "bad.jpg").write_text("this is not an image")
    out = tmp_path / "out"
    report = predict(Params(), tmp_path, str(src), str(out), model=str(model_dir), conf=0.05, max_det=300,
                     device="cpu")
    assert [s["file"] for s in report["skipped"]] == ["bad.jpg"]
    assert report["skipped"][0]["reason"].startswith("not a readable image (")
    assert report["images_in"] == 3 and report["predicted"] == 2
    with open(out / "detections.csv") as f:
        rows = list(csv.DictReader(f))
    by_image = {name: sorted((r["xmin"], r["ymin"], r["xmax"], r["ymax"], r["label"], r["score"]) for r in rows
                             if r["image_path"] == name) for name in ("mosaic.tif", "mosaic_copy.png")}
    assert by_image["mosaic.tif"] == by_image["mosaic_copy.png"]
    assert len(by_image["mosaic.tif"]) > 300  # the image's total is not capped at max_det
    assert report["limits"]["windows"] == 2 * len(raster.windows(1280, 1280, 160, 0.2))
    assert report["census"]["total"] == len(by_image["mosaic.tif"])  # one frame: nothing seen twice
    assert report["census"]["area_ha"] == pytest.approx(1280 * 1280 * RES * RES / 1e4)
    assert (out / "detections.gpkg").is_file() and (out / "census.csv").is_file()
    json.loads((out / "report.json").read_text())


def test_max_det_and_merge_ios_are_checked_in_one_line(model_dir):
    from wildtrain import families
    from wildtrain.errors import WildtrainError

    predictor = families.load(model_dir, "cpu")
    with pytest.raises(WildtrainError, match="max_det: expected a whole number"):
        predictor.predict([], max_det=0)
    with pytest.raises(WildtrainError, match=r"merge_ios: expected a fraction in \(0, 1\]"):
        predictor.predict([], merge_ios=1.5)


def window_probabilities(arrays):
    """Class scores that depend on a window's context (a blur within the window): (3, h, w) per array."""
    out = []
    for a in arrays:
        x = ndimage.uniform_filter(a.astype(np.float32), size=(9, 9, 1), mode="nearest") / 40.0
        e = np.exp(x - x.max(-1, keepdims=True))
        out.append(np.moveaxis(e / e.sum(-1, keepdims=True), -1, 0).astype(np.float32))
    return out


@pytest.mark.parametrize("masked", [False, True])
def test_streamed_class_map_equals_the_in_memory_blend(tmp_path, masked):
    """The segmenter's class map of a GeoTIFF, written strip by strip, is the in-memory blended map (outside the
    footprint: 255, and not counted)."""
    import rasterio

    from wildtrain.slicing import predict_blended

    rng = np.random.default_rng(1)
    image = ndimage.zoom(rng.integers(0, 255, (70, 90, 3)).astype(np.uint8), (10, 10, 1), order=1)[:700, :900]
    valid = np.ones(image.shape[:2], bool)
    if masked:
        valid[:, 650:] = False
    path = geotiff(tmp_path / "ortho.tif", image, alpha=valid if masked else None)
    r = raster.open_raster(Item("ortho.tif", path))
    pixels, scan = raster.segment(window_probabilities, r, 160, tmp_path / "map.tif", 3, overlap=0.2, batch=5)
    want = predict_blended(window_probabilities, [image], [160], overlap=0.2, batch=5)[0]
    with rasterio.open(tmp_path / "map.tif") as src:
        got = src.read(1)
        assert src.crs.to_string() == CRS and src.profile["tiled"]
    if masked:
        # windows wholly outside the footprint are not predicted: compare where every window was
        assert (got[~valid] == raster.NODATA_CLASS).all() and scan.windows_skipped > 0
        assert (got[:, :600] == want[:, :600]).all()
        assert pixels == np.bincount(got[valid], minlength=3).tolist()
    else:
        assert (got == want).all() and pixels == np.bincount(want.ravel(), minlength=3).tolist()
    assert scan.valid_pixels == int(valid.sum())


def test_footprint_area_in_a_geographic_crs_is_on_the_ground():
    """100 x 100 pixels of 0.0001 degree at the equator: about 1.113 km a side."""
    from wildtrain.prediction import census

    transform = (0.0001, 0.0, 30.0, 0.0, -0.0001, 0.005)
    shape = census.footprint(None, 1, 100, 100, transform)
    m2 = census.pixels_area_m2(100 * 100, transform, "EPSG:4326", shape)
    side = 100 * 0.0001 * 2 * np.pi * 6378137 / 360  # metres per 0.01 degree of the equator
    assert m2 == pytest.approx(side * side, rel=0.01)
    assert census.pixels_area_m2(100 * 100, (0.1, 0, 0, 0, -0.1, 0), CRS, None) == pytest.approx(100.0)


class SquaresNet:
    """The red-square detector as a detector network (arrays in, Detections out): a DetectorPredictor slices over it."""

    def predict(self, arrays, *, conf, iou, max_det):
        return [red_squares(a, max_det) for a in arrays]


class MarkClassifier:
    """A species classifier that looks at the context around an animal: a crop holding a blue mark is a zebra,
    else a bird. Records every crop it is given."""

    def __init__(self):
        from wildtrain.contract import ModelCard

        self.card = ModelCard(family="classifier", task="classification", framework="test", architecture="test",
                              class_names=["background", "bird", "zebra"], weights="",
                              input={"size": 32, "crop": {"padding": 0.5, "min_size": 16}})
        self.crops = []

    def predict(self, crops, batch=64):
        from wildtrain.contract import Classification

        self.crops += [c.copy() for c in crops]
        blue = [bool(((c[..., 2] > 200) & (c[..., 0] < 60)).any()) for c in crops]
        return [Classification([0.0, 0.1, 0.9] if b else [0.0, 0.8, 0.2]) for b in blue]


def test_two_stage_crops_of_a_streamed_raster_are_cut_from_the_whole_raster(tmp_path, monkeypatch):
    """Red squares, every other one with a blue mark 1-3 px right of it (inside the crop's padding, outside the box):
    the marked ones are zebras, the others birds. A square near a window's edge has its mark in the next window; cut
    from the window, its crop loses the mark. Streamed, every animal is found once with its true species, each crop is
    the whole raster's pixels around the merged box, and the result is the in-memory two-stage prediction's."""
    import csv

    from PIL import Image

    from wildtrain.data.crops import crop_box
    from wildtrain.families.detector import DetectorPredictor
    from wildtrain.families.two_stage import TwoStagePredictor
    from wildtrain.pipeline.predict import _predict_raster

    monkeypatch.setattr(raster, "CHUNK", 128)
    image, squares = field(1000, 700, spacing=37, offset=5)
    zebra = set(squares[::2])
    for x, y in zebra:
        image[y + 2:y + 6, x + 9:x + 12] = (0, 0, 255)
    two_card = ModelCard(family="two_stage", task="object-detection", framework="composite", architecture="test",
                         class_names=["bird", "zebra"], weights="", input={"size": 160, "image_size": 160})
    classifier = MarkClassifier()
    two = TwoStagePredictor(two_card, DetectorPredictor(card(), SquaresNet()), classifier)
    options = {**two.options(), "batch": 8}
    path = geotiff(tmp_path / "ortho.tif", image)
    Image.fromarray(image).save(tmp_path / "ortho.png")
    r = raster.open_raster(Item("ortho.tif", path))
    out = Outputs(tmp_path / "out", two_card, draw=False, max_det=300)
    _predict_raster(two, r, options, out, draw=False)
    streamed_crops = classifier.crops
    classifier.crops = []
    out.add(Item("ortho.png", tmp_path / "ortho.png"), image, None, two.predict([image], **options)[0])
    out.close({})
    rows = list(csv.DictReader((tmp_path / "out" / "detections.csv").open()))
    streamed = [{k: v for k, v in row.items() if k != "image_path"} for row in rows if row["image_path"] == "ortho.tif"]
    in_memory = [{k: v for k, v in row.items() if k != "image_path"} for row in rows if row["image_path"] == "ortho.png"]
    truth = sorted((x, y, "zebra" if (x, y) in zebra else "bird") for x, y in squares)
    assert sorted((int(float(b["xmin"])), int(float(b["ymin"])), b["label"]) for b in streamed) == truth
    key = lambda b: (float(b["ymin"]), float(b["xmin"]))  # noqa: E731 — equal scores: the order of ties may differ
    assert sorted(streamed, key=key) == sorted(in_memory, key=key)
    assert len(streamed_crops) == len(squares)  # each animal classified once, after the windows' boxes are merged
    boxes = [[float(b["xmin"]), float(b["ymin"]), float(b["xmax"]) - float(b["xmin"]),
              float(b["ymax"]) - float(b["ymin"])] for b in streamed]
    expected = {tuple(crop_box(b, 1000, 700, 0.5, 16)) for b in boxes}
    for crop in streamed_crops:
        assert any(crop.shape[:2] == (bt - t, rt - le) and (crop == image[t:bt, le:rt]).all()
                   for le, t, rt, bt in expected)
