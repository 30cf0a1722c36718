"""OpenVINO IR exports (wildtrain.publish.openvino), without the pipeline: converted from real ONNX exports of tiny
classifier and segmentation networks, run on OpenVINO's CPU plugin by the parity check (and refused when the IR's
weights are not the PyTorch model's), named in the STAC item and the model card, and selected by
`wildtrain export --to openvino`. The pipeline's own IRs (YOLO, two-stage, classifier, segmenter) are checked on
the shared tiny run: test_publish_pipeline.py."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from publish_helpers import TinyClassifier, TinySegmenter, export_tiny
from test_publish import card, classifier_io, images, segmenter_io
from wildtrain.errors import WildtrainError
from wildtrain.contract import Exported
from wildtrain.publish import Staged, finish, openvino, parity, select, stac
from wildtrain.publish.release import Context, release


def publish(tmp_path, task: str, exported: Exported):
    c = card(task, exported.io.classes, exported.io.size)
    context = Context(metrics={"split": "test", "accuracy": 0.5}, hyperparameters={"classifier.lr": 0.001})
    report = parity.check(exported, context.parity_nms)
    files = finish(Staged(tmp_path, c, exported, report, context), tmp_path / "publish", release(c, "m", 1))
    return report, files


@pytest.mark.parametrize("task", ["classification", "semantic-segmentation"])
def test_ir_passes_parity_and_is_published(tmp_path, task):
    if task == "classification":
        model, io, ims = TinyClassifier(3), classifier_io(), images(4, 24)
    else:
        model, io, ims = TinySegmenter(2), segmenter_io(), images(3, 32)
    exported = openvino.add(export_tiny(model, io, tmp_path / "x", ims), tmp_path / "x")
    xml = exported.files["openvino"]
    assert xml.name == "model.xml" and exported.files["openvino_weights"] == xml.with_suffix(".bin")
    assert "<net " in xml.read_text()[:500]  # an IR, not a copy of the ONNX file
    assert exported.files["openvino_weights"].stat().st_size > 4 * sum(p.numel() for p in model.parameters()) - 64

    report, files = publish(tmp_path, task, exported)
    assert report["openvino"]["max_abs_diff"] <= parity.TOLERANCE  # FP32 IR: FP16 weights would not pass
    item = json.loads(files["stac"].read_text())
    stac.validate(item)
    ir = item["assets"]["openvino"]
    assert ir["href"] == "model.xml" and ir["mlm:artifact_type"] == "openvino" and "mlm:model" in ir["roles"]
    assert ir["mlm:framework"] == "OpenVINO" and stac.SEMVER.match(ir["mlm:framework_version"])
    assert item["assets"]["openvino_weights"]["href"] == "model.bin"
    assert "openvino" in item["properties"]["wildtrain:parity"]
    assert "- openvino: max |diff|" in files["card"].read_text()
    chosen = select(files["stac"].parent, "openvino")
    assert [f.name for f in chosen] == ["model.bin", "model.xml"]
    # the published IR runs alone (the .bin found beside the .xml) and gives PyTorch's answer
    alone = tmp_path / "alone"
    alone.mkdir()
    for f in chosen:
        shutil.copy(f, alone / f.name)
    x, ref = exported.reference
    assert np.abs(openvino.run(alone / "model.xml", x) - ref).max() <= parity.TOLERANCE


def test_ir_of_other_weights_is_refused_in_one_line(tmp_path):
    ims = images(4, 24)
    good = openvino.add(export_tiny(TinyClassifier(3), classifier_io(), tmp_path / "a", ims), tmp_path / "a")
    other = openvino.add(export_tiny(TinyClassifier(3, seed=1), classifier_io(), tmp_path / "b", ims), tmp_path / "b")
    shutil.copy(other.files["openvino_weights"], good.files["openvino_weights"])  # same graph, other weights
    with pytest.raises(WildtrainError) as e:
        parity.check(good, {})
    msg = str(e.value)
    assert msg.startswith("model.xml: openvino export differs from the PyTorch model on 4 held-out images: max |logit")
    assert msg.endswith("not registered") and "\n" not in msg
    good.files["openvino"].write_text("<net")  # not even an IR: refused as an export that does not run
    with pytest.raises(WildtrainError, match=r"^model.xml: the openvino export does not run .*; not registered$"):
        parity.check(good, {})


def test_no_onnx_means_no_ir_and_says_why(tmp_path):
    without = Exported(unavailable={"onnx": "mmdet models export only through mmdeploy"})
    out = openvino.add(without, tmp_path)
    assert out.unavailable["openvino"] == "made from ONNX: mmdet models export only through mmdeploy"
    assert openvino.add(Exported(), tmp_path) == Exported()
