"""YoloNet calls Ultralytics' steps directly (AutoBackend, LetterBox, NMS, box scaling) instead of `YOLO.predict`,
for speed: its boxes, classes and scores must be the ones `YOLO.predict` gives on the same arrays.

The model is a YOLO11n built from yolo11n.yaml (random weights, BatchNorm statistics calibrated on a few scenes; no
training), saved as a model folder the way the train stage writes one (slim checkpoint + model.json)."""

from __future__ import annotations

import numpy as np
import pytest

from tiny_models import SIZE, scene, yolo_detector
from wildtrain import env, families


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("yolo_model")
    env.configure(folder)
    return yolo_detector(folder)


def reference(model_dir, images, **kw):
    """What YOLO.predict gives (BGR arrays in, as Ultralytics wants)."""
    from ultralytics import YOLO

    yolo = YOLO(str(model_dir / "model.pt"), task="detect")
    results = yolo.predict([np.ascontiguousarray(im[..., ::-1]) for im in images], imgsz=SIZE, device="cpu",
                           verbose=False, batch=len(images), **kw)
    return [(r.boxes.xyxy.numpy(), r.boxes.cls.numpy().astype(int), r.boxes.conf.numpy()) for r in results]


@pytest.mark.parametrize("shapes", [
    [(SIZE, SIZE)] * 5,  # equal slices: no letterbox padding
    [(SIZE, SIZE), (120, SIZE), (300, 410), (SIZE, 96)],  # mixed: each letterboxed to SIZE x SIZE
    [(100, 150)] * 2,  # same non-square shape: scaled up and padded to a stride multiple only
], ids=["slices", "mixed", "rect"])
def test_same_as_ultralytics_predict(model_dir, shapes):
    rng = np.random.default_rng(len(shapes))
    images = [scene(rng, h, w) for h, w in shapes]
    kw = {"conf": 0.1, "iou": 0.6, "max_det": 100}
    ours = families.load(model_dir, "cpu").net.predict(images, **kw)
    theirs = reference(model_dir, images, **kw)
    assert sum(len(d.boxes) for d in ours) > 20  # the comparison has boxes to compare
    for det, (xyxy, cls, conf) in zip(ours, theirs):
        boxes = np.asarray(det.boxes, dtype=float).reshape(-1, 4)
        assert boxes.shape == xyxy.shape
        np.testing.assert_allclose(np.c_[boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], xyxy, atol=1e-3)
        assert det.classes == cls.tolist()
        np.testing.assert_allclose(det.scores, conf, atol=1e-6)


def test_sliced_predict_is_per_slice_predict_merged(model_dir):
    """Predictor.predict on a large image = the net on its windows (in the same batches), shifted back and
    merged."""
    from wildtrain.data.tiling import windows
    from wildtrain.slicing import merge

    rng = np.random.default_rng(7)
    image = scene(rng, 430, 380)
    predictor = families.load(model_dir, "cpu")
    kw = {"conf": 0.1, "iou": 0.6, "max_det": 300}
    got = predictor.predict([image], **kw, batch=4)[0]
    wins = windows(380, 430, SIZE, 0.2)
    views = [image[t:b, l:r] for l, t, r, b in wins]
    per_window = [d for i in range(0, len(views), 4) for d in predictor.net.predict(views[i:i + 4], **kw)]
    boxes, classes, scores = [], [], []
    for (left, top, _, _), det in zip(wins, per_window):
        boxes += [[x + left, y + top, w, h] for x, y, w, h in det.boxes]
        classes += det.classes
        scores += det.scores
    want = merge(boxes, classes, scores, 0.5)
    assert len(got.boxes) == len(want.boxes) > 0
    np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-3)
    assert got.classes == want.classes
    np.testing.assert_allclose(got.scores, want.scores, atol=1e-5)


def test_concurrent_calls_of_other_shapes(model_dir):
    """A served model predicts in threads: calls with other input shapes at the same time keep their own boxes."""
    import threading

    rng = np.random.default_rng(3)
    batches = [[scene(rng, SIZE, SIZE)] * 2, [scene(rng, 100, 150)] * 2]  # other shapes, other anchors
    net = families.load(model_dir, "cpu").net
    kw = {"conf": 0.1, "iou": 0.6, "max_det": 100}
    want = [net.predict(b, **kw) for b in batches]
    got: list = []

    def worker(k: int) -> None:
        got.extend((k, net.predict(batches[k], **kw)) for _ in range(40))

    threads = [threading.Thread(target=worker, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 80 and all(dets == want[k] for k, dets in got)


def test_bf16_is_opt_in_and_leaves_fp32_boxes_unchanged(model_dir, capsys):
    """precision bf16 runs the backbone in bfloat16 (boxes close to, not equal to fp32's): asked for by name only, and
    a later fp32 call gives exactly the boxes it gave before (the head's fp32 wrapper changes nothing in fp32)."""
    from wildtrain.errors import WildtrainError

    predictor = families.load(model_dir, "cpu")
    image = scene(np.random.default_rng(3), 430, 380)
    options = {**predictor.options(), "conf": 0.05}
    assert options["precision"] == "fp32"
    before = predictor.predict([image], **options)[0]
    fast = predictor.predict([image], **{**options, "precision": "bf16"})[0]
    after = predictor.predict([image], **options)[0]
    assert before.boxes and (before.boxes, before.classes, before.scores) == (after.boxes, after.classes, after.scores)
    boxes = np.asarray(fast.boxes, float).reshape(-1, 4)
    assert len(boxes) and (boxes[:, :2] >= -1).all() and (boxes[:, 0] + boxes[:, 2] <= 381).all()
    from wildtrain.env import cpu_kernel_mode

    # pinned kernels (the default avx2) hide the CPU's bfloat16 units: bf16 says it will be slow, once
    assert capsys.readouterr().out.count("set WILDTRAIN_CPU_KERNELS=native") == (cpu_kernel_mode() != "native")
    with pytest.raises(WildtrainError, match="precision: expected fp32 or bf16 for a yolo detector, got 'fp16'"):
        predictor.predict([], **{**options, "precision": "fp16"})
