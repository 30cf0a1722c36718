"""Publishing (wildtrain.publish), without the pipeline: the parity check on real ONNX/TorchScript exports (and its
refusals), YOLO box matching after NMS, STAC-MLM items validated with stac-model (and the refusals of the rules it
does not encode), and the .dlpk of a classifier and of a segmentation model run through a stand-in for ArcGIS.
The pipeline's own publications (YOLO, two-stage, MMDetection) are tested on the shared tiny run:
test_publish_pipeline.py."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from publish_helpers import ArcGIS, TinyClassifier, TinySegmenter, export_tiny, unpack
from wildtrain.errors import WildtrainError
from wildtrain.contract import Exported, ExportIO, ModelCard
from wildtrain.publish import Staged, finish, parity, stac
from wildtrain.publish.release import Context, release

CLASSES = ("antelope", "background", "bird")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def images(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size + 7 * i, size + 3 * i, 3), dtype=np.uint8) for i in range(n)]


def classifier_io(size: int = 24) -> ExportIO:
    return ExportIO(size=size, resize="stretch", mean=MEAN, std=STD, output="logits", output_dims=("batch", "class"),
                    output_shape=(-1, len(CLASSES)), classes=CLASSES, input_name="images", output_name="logits")


def segmenter_io(size: int = 32) -> ExportIO:
    return ExportIO(size=size, resize="stretch", mean=MEAN, std=STD, output="segmentation",
                    output_dims=("batch", "class", "height", "width"), output_shape=(-1, 2, size, size),
                    classes=("ground", "animal"), input_name="images", output_name="masks")


def card(task: str, classes, size: int) -> ModelCard:
    return ModelCard(family={"classification": "classifier", "semantic-segmentation": "segmenter"}[task], task=task,
                     framework="lightning", architecture="tinynet", class_names=list(classes), weights="model.pt",
                     input={"size": size}, training={"mlflow_run_id": "0" * 32, "dataset_hash": "ab" * 32,
                                                     "data_source": "data/source/survey", "git_commit": "c" * 40},
                     hashes={"weights_sha256": "d" * 64})


def published(tmp_path, task: str, exported: Exported, name: str):
    """The publication `register` writes, for a model outside the pipeline."""
    c = card(task, exported.io.classes, exported.io.size)
    context = Context(metrics={"split": "test", "accuracy": 0.5, "per_class": {n: {"f1": 0.5} for n in c.class_names}},
                      hyperparameters={"classifier.lr": 0.001})
    report = parity.check(exported, context.parity_nms)
    files = finish(Staged(tmp_path, c, exported, report, context), tmp_path / "publish",
                   release(c, name, 3, aliases=("champion",)))
    return c, report, files


def test_parity_passes_real_exports_and_refuses_another_model_in_one_line(tmp_path):
    ims = images(4, 24)
    good = export_tiny(TinyClassifier(3), classifier_io(), tmp_path / "good", ims)
    report = parity.check(good, {})
    assert report["images"] == 4 and {"onnx", "torchscript"} <= set(report)
    assert max(report["onnx"]["max_abs_diff"], report["torchscript"]["max_abs_diff"]) <= parity.TOLERANCE
    # exports of other weights than the PyTorch model they claim to be: refused, naming the file, in one line
    wrong = export_tiny(TinyClassifier(3, seed=1), classifier_io(), tmp_path / "wrong", ims,
                        reference_model=TinyClassifier(3, seed=0))
    with pytest.raises(WildtrainError) as e:
        parity.check(wrong, {})
    assert "model.onnx: onnx export differs from the PyTorch model on 4 held-out images: max |logit difference|" \
           in str(e.value) and str(e.value).endswith("not registered") and "\n" not in str(e.value)
    broken = tmp_path / "good" / "model.onnx"
    broken.write_bytes(broken.read_bytes()[:1000])  # truncated: does not even load
    with pytest.raises(WildtrainError, match=r"model.onnx: the onnx export does not run .*; not registered"):
        parity.check(good, {})


def raw_yolo(boxes: list[tuple], classes: int = 3, anchors: int = 40) -> np.ndarray:
    """A raw YOLO head [1, 4 + classes, anchors]: the given (cx, cy, w, h, class, score) at the first anchors, low
    scores elsewhere."""
    rng = np.random.default_rng(0)
    out = np.zeros((1, 4 + classes, anchors), np.float32)
    out[0, :4] = rng.uniform(10, 50, (4, anchors))
    out[0, 4:] = rng.uniform(0, 0.0005, (classes, anchors))
    for k, (cx, cy, w, h, cls, score) in enumerate(boxes):
        out[0, :4, k] = (cx, cy, w, h)
        out[0, 4 + cls, k] = score
    return out


def test_yolo_boxes_after_nms_are_matched_and_a_moved_or_relabelled_box_is_refused():
    nms = {"conf": 0.001, "iou": 0.7, "max_det": 100}
    ref = raw_yolo([(20, 20, 10, 10, 0, 0.9), (60, 60, 12, 8, 1, 0.8), (21, 20, 10, 10, 0, 0.7),
                    (90, 30, 6, 6, 2, 0.5)])
    noisy = ref + np.random.default_rng(1).normal(0, 1e-6, ref.shape).astype(np.float32)
    ok = parity.compare("yolo", ref, noisy, nms)
    assert ok["ok"] and ok["boxes"] == ok["matched"] == 3 and ok["min_iou"] > 0.999  # (21, 20) suppressed by NMS
    moved = ref.copy()
    moved[0, 0, 1] += 3  # one kept box 3 px to the right: its scores are identical, its box is not
    bad = parity.compare("yolo", ref, moved, nms)
    assert not bad["ok"] and bad["why"] == "1 of 3 boxes after NMS differ (IoU < 0.99 or another class)"
    close = ref.copy()
    close[0, 4 + 1, 3] = 0.49985  # PyTorch: class 2 (0.5) ahead of class 1 by 1.5e-4, more than the tolerance
    relabelled = close.copy()  # each score within 1e-4, but the export's winner is class 1: another answer
    relabelled[0, 4 + 2, 3], relabelled[0, 4 + 1, 3] = 0.49992, 0.49993
    assert parity.compare("yolo", close, relabelled, nms)["why"].startswith("1 of 3 boxes")
    tie = ref.copy()
    tie[0, 4 + 1, 3] = 0.49995  # PyTorch's own runner-up within 1e-4: either label is the same answer
    flipped = tie.copy()
    flipped[0, 4 + 1, 3], flipped[0, 4 + 2, 3] = 0.50001, 0.49999
    assert parity.compare("yolo", tie, flipped, nms)["ok"]
    assert parity.compare("yolo", ref, ref * 1.01, nms)["why"].startswith("max |score difference|")


def test_classifier_and_segmenter_publications_validate_and_run_in_arcgis(tmp_path):
    """A segmentation family plugs in through `Exported` alone: parity, STAC (semantic-segmentation), the .dlpk
    (ClassifyPixels), all from its ExportIO."""
    ims = images(3, 24)
    cls_model = TinyClassifier(3)
    c, report, files = published(tmp_path / "c", "classification",
                                 export_tiny(cls_model, classifier_io(), tmp_path / "cx", ims), "wildtrain-classifier")
    item = json.loads(files["stac"].read_text())
    stac.validate(item)
    props = item["properties"]
    assert props["mlm:tasks"] == ["classification"] and props["mlm:input"][0]["input"]["shape"] == [-1, 3, 24, 24]
    assert [v["mean"] for v in props["mlm:input"][0]["value_scaling"]] == pytest.approx([m * 255 for m in MEAN])
    assert [k["name"] for k in props["mlm:output"][0]["classification:classes"]] == list(CLASSES)
    assert item["assets"]["onnx"]["mlm:artifact_type"] == "onnx" and "mlm:model" in item["assets"]["onnx"]["roles"]
    assert {"mlflow-run", "mlflow-model-version", "git-commit", "dataset"} <= {link["rel"] for link in item["links"]}

    emd, emd_file, function = unpack(files["dlpk"], tmp_path / "cdl")
    assert emd["ModelType"] == "ObjectClassification" and emd["ImageHeight"] == emd["ImageWidth"] == 24
    assert [k["Name"] for k in emd["Classes"]] == list(CLASSES) and all(len(k["Color"]) == 3 for k in emd["Classes"])
    arcgis = ArcGIS(function, emd_file)
    assert "rasters" in {p["name"] for p in arcgis.params} and "Label" in {f["name"] for f in arcgis.fields}
    chips = images(3, 40, seed=5)
    features = arcgis.classify(chips)
    x, _ = __import__("wildtrain.publish.esri_inference", fromlist=["to_input"]).to_input(
        chips, {"size": 24, "resize": "stretch", "mean": MEAN, "std": STD})
    with torch.no_grad():
        probs = torch.softmax(cls_model(torch.from_numpy(x)), 1).numpy()
    assert [f["attributes"]["Label"] for f in features] == [CLASSES[i] for i in probs.argmax(1)]
    assert [f["attributes"]["Confidence"] for f in features] == pytest.approx(probs.max(1).tolist(), abs=1e-5)

    seg_model = TinySegmenter(2)
    s, report, files = published(tmp_path / "s", "semantic-segmentation",
                                 export_tiny(seg_model, segmenter_io(), tmp_path / "sx", images(2, 32)),
                                 "wildtrain-segmenter")
    assert report["onnx"]["max_abs_diff"] <= parity.TOLERANCE
    item = json.loads(files["stac"].read_text())
    stac.validate(item)
    assert item["properties"]["mlm:tasks"] == ["semantic-segmentation"]
    assert item["properties"]["mlm:output"][0]["result"]["dim_order"] == ["batch", "class", "height", "width"]
    emd, emd_file, function = unpack(files["dlpk"], tmp_path / "sdl")
    assert emd["ModelType"] == "ClassifyPixels" and [k["Value"] for k in emd["Classes"]] == [1, 2]
    tile = images(1, 32, seed=9)[0][:32, :32]
    classes = ArcGIS(function, emd_file).classify_pixels(tile)
    x, _ = __import__("wildtrain.publish.esri_inference", fromlist=["to_input"]).to_input(
        [tile], {"size": 32, "resize": "stretch", "mean": MEAN, "std": STD})
    with torch.no_grad():
        expected = seg_model(torch.from_numpy(x))[0].argmax(0).numpy() + 1
    assert classes.shape == (1, 32, 32) and (classes[0] == expected).all()
    assert "Per class:" in files["card"].read_text() and "## Known limits" in files["card"].read_text()


def test_stac_validation_refuses_what_mlm_forbids(tmp_path):
    _, _, files = published(tmp_path, "classification",
                            export_tiny(TinyClassifier(3), classifier_io(), tmp_path / "x", images(2, 24)),
                            "wildtrain-classifier")
    good = json.loads(files["stac"].read_text())
    stac.validate(good)

    def refused(change, message: str) -> None:
        item = copy.deepcopy(good)
        change(item)
        with pytest.raises(WildtrainError, match=message):
            stac.validate(item)

    refused(lambda i: i["properties"].update({"mlm:name": "my model"}), "mlm:name 'my model' must match")
    refused(lambda i: i["properties"]["mlm:input"][0]["input"].update(data_type="float"),
            r"invalid MLM properties \(mlm:input")
    refused(lambda i: i["properties"].update({"mlm:tasks": ["counting"]}), "invalid MLM properties")
    refused(lambda i: [a["roles"].remove("mlm:model") for a in i["assets"].values() if "mlm:model" in a["roles"]],
            "no asset has the role mlm:model")
    refused(lambda i: i["assets"]["onnx"].pop("mlm:artifact_type"), "model asset 'onnx' lacks mlm:artifact_type")
    refused(lambda i: i["assets"]["onnx"].update({"mlm:accelerator": "tpu"}), "asset 'onnx': invalid MLM runtime")
    refused(lambda i: i["properties"].update({"mlm:pretrained_source": "ImageNet"}), "must be null")
    refused(lambda i: i["properties"].pop("bands"), "no 'bands'")
    refused(lambda i: i.update(stac_extensions=[]), "stac_extensions lacks")
