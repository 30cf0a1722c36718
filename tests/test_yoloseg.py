"""The instance segmenter (families.yoloseg): mask <-> polygon conversions with known answers, COCOeval segm + bbox
scored and resampled exactly, the parity check of YOLO-seg exports; and one tiny end to end — YOLO-seg built from
the YAML inside Ultralytics, trained one epoch on the built-in survey's masks, scored, predicting outlines of a
GeoTIFF into GeoJSON and GeoPackage, exported to ONNX and checked against PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from wildtrain.contract import Instances
from wildtrain.data.coco import CocoDataset
from wildtrain.data.masks import area, decode, encode, polygons
from wildtrain.data.yolo_layout import segment_lines


def shoelace(poly: list[float]) -> float:
    x, y = np.asarray(poly[0::2]), np.asarray(poly[1::2])
    return 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))


def test_a_square_mask_becomes_its_square_polygon():
    mask = np.zeros((120, 160), bool)
    mask[10:90, 20:100] = True  # pixels 20..99 x 10..89: the square [20, 100] x [10, 90] in COCO's corner convention
    (poly,) = polygons(mask)
    pts = np.asarray(poly).reshape(-1, 2)
    # traced 1/8 px inside the pixel edges (masks.POLY_UPSAMPLE 4): 79.75^2 of 80^2
    assert len(pts) == 4 and shoelace(poly) == pytest.approx(6400, rel=0.01)
    assert pts.min(0) == pytest.approx([20, 10], abs=0.2) and pts.max(0) == pytest.approx([100, 90], abs=0.2)
    assert area([poly], 120, 160) == 6400  # rasterized back by pycocotools: the very pixels
    assert (decode([poly], 120, 160) == mask).all()


def test_a_disc_and_two_blobs_keep_their_area():
    yy, xx = np.mgrid[:100, :100]
    disc = (xx - 50.5) ** 2 + (yy - 40.5) ** 2 <= 20 ** 2
    (poly,) = polygons(disc)
    assert area([poly], 100, 100) == pytest.approx(disc.sum(), rel=0.01)
    assert shoelace(poly) == pytest.approx(disc.sum(), rel=0.02)
    two = np.zeros((50, 50), bool)
    two[5:15, 5:15] = two[30:45, 20:40] = True
    assert sorted(area([p], 50, 50) for p in polygons(two)) == [100, 300]
    assert polygons(np.zeros((5, 5), bool)) == []


def test_yolo_seg_lines_from_rle_polygons_and_boxes():
    rle_mask = np.zeros((50, 100), bool)
    rle_mask[10:30, 40:60] = True
    ds = CocoDataset(
        images=[{"id": 1, "file_name": "a.png", "width": 100, "height": 50},
                {"id": 2, "file_name": "b.png", "width": 100, "height": 50}],
        annotations=[
            {"id": 1, "image_id": 1, "category_id": 9, "bbox": [40, 10, 20, 20], "segmentation": encode(rle_mask)},
            {"id": 2, "image_id": 1, "category_id": 4, "bbox": [0, 0, 10, 10],
             "segmentation": [[0, 0, 10, 0, 10, 10]]},
            {"id": 3, "image_id": 1, "category_id": 4, "bbox": [70, 20, 10, 20]},  # no mask: its box
            {"id": 4, "image_id": 1, "category_id": 4, "bbox": [0, 0, 100, 50], "iscrowd": 1,
             "segmentation": encode(np.ones((50, 100), bool))}],  # a crowd region: not an instance to learn
        categories=[{"id": 9, "name": "zebra"}, {"id": 4, "name": "bird"}])
    lines = segment_lines(ds)
    assert lines[2] == ""  # a negative image: an empty label file
    rows = [line.split() for line in lines[1].splitlines()]
    assert [r[0] for r in rows] == ["1", "0", "0"]  # class index in sorted category ids: bird (4) 0, zebra (9) 1
    square = np.asarray(rows[0][1:], float).reshape(-1, 2) * (100, 50)
    assert area([square.ravel().tolist()], 50, 100) == 400  # the RLE's very pixels, rasterized back
    assert square.min(0) == pytest.approx([40, 10], abs=0.2) and square.max(0) == pytest.approx([60, 30], abs=0.2)
    assert np.asarray(rows[1][1:], float) == pytest.approx([0, 0, 0.1, 0, 0.1, 0.2])
    assert np.asarray(rows[2][1:], float) == pytest.approx([0.7, 0.4, 0.8, 0.4, 0.8, 0.8, 0.7, 0.8])


def survey(n_images: int = 6) -> tuple[CocoDataset, list[list[list[float]]]]:
    """Images with two square animals each (masks as RLE), and each animal's true polygon."""
    images, anns, truth = [], [], []
    for i in range(1, n_images + 1):
        images.append({"id": i, "file_name": f"{i}.png", "width": 64, "height": 48})
        for k, (x, y, s) in enumerate([(4 + i, 6, 12), (30, 20 + i % 3, 16)]):
            m = np.zeros((48, 64), bool)
            m[y:y + s, x:x + s] = True
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1 + k, "bbox": [x, y, s, s],
                         "area": float(s * s), "segmentation": encode(m), "iscrowd": 0})
            truth.append([[x, y, x + s, y, x + s, y + s, x, y + s]])
    return CocoDataset(images=images, annotations=anns, categories=[{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]), \
        truth


def predictions(ds: CocoDataset, outlines: list, scores: list[float]) -> list[Instances]:
    out = []
    for im in ds.images:
        idx = [j for j, a in enumerate(ds.annotations) if a["image_id"] == im["id"]]
        boxes = []
        for j in idx:
            pts = np.asarray(outlines[j][0]).reshape(-1, 2)
            boxes.append([*pts.min(0).tolist(), *(pts.max(0) - pts.min(0)).tolist()])
        out.append(Instances(boxes, [ds.annotations[j]["category_id"] - 1 for j in idx], [scores[j] for j in idx],
                             polygons=[outlines[j] for j in idx]))
    return out


def test_segm_and_bbox_scores_are_pycocotools_and_the_table_resamples_them_exactly():
    from wildtrain.evaluate import bootstrap, detection
    from wildtrain.evaluate.detection_table import DetectionTable
    from wildtrain.evaluate.instances import InstanceTable, run, segm_results

    ds, truth = survey()
    names = ds.class_names
    perfect = predictions(ds, truth, [0.9] * len(truth))
    segm = segm_results(ds, perfect, names)
    assert detection.coco_eval(ds, segm, run(ds, segm, "segm"))["map50_95"] == pytest.approx(1.0)
    boxes = detection.to_coco_results(ds, perfect, names)
    assert detection.coco_eval(ds, boxes, run(ds, boxes, "bbox"))["map50_95"] == pytest.approx(1.0)

    # the same boxes, but every third outline a triangle (half the square): the box is right, the mask is not
    rng = np.random.default_rng(0)
    halves = [[[p[0][0], p[0][1], p[0][2], p[0][3], p[0][4], p[0][5]]] if k % 3 == 0 else p for k, p in enumerate(truth)]
    preds = predictions(ds, halves, rng.uniform(0.1, 1, len(truth)).tolist())
    segm, boxes = segm_results(ds, preds, names), detection.to_coco_results(ds, preds, names)
    ev_mask, ev_box = run(ds, segm, "segm"), run(ds, boxes, "bbox")
    mask, box = detection.coco_eval(ds, segm, ev_mask), detection.coco_eval(ds, boxes, ev_box)
    assert box["map50_95"] == pytest.approx(1.0) and mask["map50_95"] < 0.9
    unit = lambda im: f"image:{im['file_name']}"  # noqa: E731
    table = InstanceTable(DetectionTable.build(ds, boxes, ev_box, 0.25, unit),
                          DetectionTable.build(ds, segm, ev_mask, 0.25, unit))
    same = bootstrap.identity(table)
    assert same["mask_map50_95"] == pytest.approx(mask["map50_95"], abs=1e-9)
    assert same["mask_map50"] == pytest.approx(mask["map50"], abs=1e-9)
    assert same["map50_95"] == pytest.approx(box["map50_95"], abs=1e-9)
    assert same["per_class.a.mask_ap50_95"] == pytest.approx(mask["per_class"]["a"]["ap50_95"], abs=1e-9)
    again = InstanceTable.from_arrays(table.units, table.arrays())
    assert bootstrap.identity(again) == same
    ci = bootstrap.intervals(table, 200, 0)["mask_map50_95"]
    assert ci[0] <= mask["map50_95"] <= ci[1] and ci[0] < ci[1]


def test_parity_refuses_mask_coefficients_that_differ():
    from wildtrain.publish.parity import compare

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(2, 4 + 3 + 32, 50)).astype(np.float32)
    ref[:, :4] = np.abs(ref[:, :4]) * 50 + 10
    ref[:, 4:7] = 1 / (1 + np.exp(-ref[:, 4:7]))
    nms = {"conf": 0.25, "iou": 0.7, "max_det": 100}
    assert compare("yolo-seg", ref, ref.copy(), nms)["ok"]
    off = ref.copy()
    off[:, 7 + 5, 3] += 1e-3
    result = compare("yolo-seg", ref, off, nms)
    assert not result["ok"] and "mask coefficient" in result["why"]


# ---- end to end ----------------------------------------------------------------------------------------------------

SIZE = 96
e2e = pytest.mark.slow  # a real training (~35 s of CPU on 2 cores for the four tests)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The built-in survey (16 images of 96 px, its RLE masks), converted; YOLO-seg from yolo11n-seg.yaml trained
    one epoch; its model folder as `wildtrain train yoloseg` writes it (without the MLflow run)."""
    from wildtrain import families, params
    from wildtrain.contract import ModelCard
    from wildtrain.io import copy_file
    from wildtrain.pipeline.convert import convert
    from wildtrain.pipeline.prepare import prepare
    from wildtrain.pipeline.train import train_data

    root = tmp_path_factory.mktemp("yoloseg")
    p = params.validate({
        "data": {"synthetic": {"num_images": 16, "image_size": SIZE, "max_objects": 3}},
        "convert": {"crops": {"enabled": False}, "test_fraction": 0.25},
        "yoloseg": {"epochs": 1, "imgsz": SIZE, "batch": 8, "workers": 0, "device": "cpu", "mosaic": 0.0,
                    "warmup_epochs": 0.0},
        "yoloseg_evaluate": {"device": "cpu", "bootstrap": {"resamples": 200}}}, "test params")
    prepare(p, root)
    convert(p, root)
    fam = families.get("yoloseg")
    data = train_data(p, root)
    trained = fam.train(p.yoloseg, data, root / p.paths.runs / "yoloseg", resume=False, on_epoch=None)
    folder = fam.model_dir(p, root)
    folder.mkdir()
    copy_file(trained.files["model.pt"], folder / "model.pt")
    ModelCard(family=fam.name, task=fam.task, framework=trained.framework, architecture=trained.architecture,
              class_names=data.class_names, weights=trained.weights, input=trained.input,
              extra=trained.extra).save(folder)
    return p, root, folder, trained


@e2e
def test_trains_from_the_packaged_yaml_on_polygon_labels(trained):
    p, root, folder, result = trained
    assert result.architecture == "yolo11n-seg" and result.epochs_completed == 1
    labels = sorted((root / "runs/yoloseg/layout/labels/train").glob("*.txt"))
    rows = [line.split() for f in labels for line in f.read_text().splitlines()]
    assert rows and all(len(r) >= 7 and len(r) % 2 == 1 for r in rows)  # class + at least 3 points
    assert all(0 <= float(v) <= 1 for r in rows for v in r[1:])


@e2e
def test_evaluates_segm_and_box_map_with_intervals(trained):
    from wildtrain import families

    p, root, folder, _ = trained
    fam = families.get("yoloseg")
    metrics, table = fam.evaluate(fam.load(folder, "cpu"), p, root, write_outputs=True)
    for key in ("map50_95", "map50", "mask_map50_95", "mask_map50"):
        assert 0 <= metrics[key] <= 1 and len(metrics[f"{key}_ci95"]) == 2
    assert metrics["bootstrap"]["resamples"] == 200 and table.kind == "instances"
    results = json.loads((root / "data/predictions_yoloseg/test.json").read_text())
    assert len(results) == metrics["instances"] and all("counts" in r["segmentation"] for r in results)


@e2e
def test_predicts_outlines_of_a_geotiff_into_geojson_and_geopackage(trained, tmp_path):
    import pyogrio
    import rasterio
    from PIL import Image
    from rasterio.transform import from_origin

    from wildtrain import families
    from wildtrain.pipeline.predict import predict
    from wildtrain.serve import as_rows

    p, root, folder, _ = trained
    image = np.asarray(Image.open(sorted((root / "data/raw/images").iterdir())[0]).convert("RGB"))
    src = tmp_path / "survey"
    src.mkdir()
    with rasterio.open(src / "ortho.tif", "w", driver="GTiff", width=image.shape[1], height=image.shape[0],
                       count=3, dtype="uint8", crs="EPSG:32736", transform=from_origin(500000, 9000000, 0.05, 0.05)) as d:
        d.write(np.moveaxis(image, -1, 0))
    out = tmp_path / "out"
    report = predict(p, root, str(src), str(out), model=str(folder), conf=0.001, draw=True)
    assert report["predicted"] == 1 and (out / "draw/ortho.jpg").is_file()
    coco = json.loads((out / "detections.json").read_text())
    outlined = [a for a in coco["annotations"] if a["segmentation"]]  # an instance whose mask is empty has none
    assert outlined and all(len(poly) >= 6 for a in outlined for poly in a["segmentation"])
    features = json.loads((out / "instances.geojson").read_text())["features"]
    assert len(features) == len(outlined)
    lon, lat = np.asarray(features[0]["geometry"]["coordinates"][0][0]).T
    assert (lon > 32).all() and (lon < 34).all() and (lat < -8).all() and (lat > -10).all()  # UTM 36S, near 33E 9S
    info = pyogrio.read_info(out / "instances.gpkg", layer="instances")
    assert info["features"] == len(features) and "32736" in info["crs"]
    predictor = families.load(folder, "cpu")
    (row,) = as_rows(predictor.card, predictor.predict([image], conf=0.001))  # what the served model answers
    row = json.loads(json.dumps(row))
    assert len(row["polygons"]) == len(row["boxes"]) == len(row["labels"]) > 0
    assert all(len(poly) >= 6 for outline in row["polygons"] for poly in outline)


@e2e
def test_exports_onnx_that_matches_pytorch(trained, tmp_path):
    from wildtrain import families
    from wildtrain.publish import dlpk, parity

    p, root, folder, _ = trained
    exported = families.get("yoloseg").export(folder, tmp_path / "export", p, root)
    assert exported.io.output == "yolo-seg" and exported.reference[1].shape[1] == 4 + 4 + 32
    report = parity.check(exported, {"conf": 0.001, "iou": 0.7, "max_det": 100})
    assert report["onnx"]["mask_coefficients_max_abs_diff"] <= parity.TOLERANCE
    assert report["onnx"]["matched"] == report["onnx"]["boxes"]
    assert "ArcGIS" in dlpk.why_not(exported)
