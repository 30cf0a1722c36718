"""The segmenter's parts without training: the metrics against a hand-computed case (a class absent from both),
the losses, blending of overlapping mask windows without seams, class-map outputs (PNG, served rows), weights."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from wildtrain import slicing
from wildtrain.evaluate.segmentation import confusion, scores
from wildtrain.contract import ModelCard, Segmentation

IGNORE = 255
NAMES = ["background", "water", "reeds", "hut"]


def test_metrics_match_a_hand_computed_case_with_a_class_absent_from_both():
    truth = np.array([[0, 0, 1, 1],
                      [0, 2, 2, IGNORE]])
    pred = np.array([[0, 1, 1, 1],
                     [0, 2, 0, 0]])  # the ignored pixel's prediction is not scored
    cm = confusion(truth, pred, 4)
    assert cm.tolist() == [[2, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    s = scores(cm, NAMES)
    # background: TP 2, FP 1, FN 1; water: TP 2, FP 1, FN 0; reeds: TP 1, FP 0, FN 1; hut: nowhere
    expected_iou = {"background": 2 / 4, "water": 2 / 3, "reeds": 1 / 2, "hut": None}
    expected_dice = {"background": 4 / 6, "water": 4 / 5, "reeds": 2 / 3, "hut": None}
    for name in NAMES:
        assert s["per_class"][name]["iou"] == pytest.approx(expected_iou[name]) if expected_iou[name] else \
            s["per_class"][name]["iou"] is None
        assert s["per_class"][name]["dice"] == pytest.approx(expected_dice[name]) if expected_dice[name] else \
            s["per_class"][name]["dice"] is None
    assert s["miou"] == pytest.approx((1 / 2 + 2 / 3 + 1 / 2) / 3)  # hut left out, not counted as 0 or 1
    assert s["dice_macro"] == pytest.approx((2 / 3 + 4 / 5 + 2 / 3) / 3)
    assert s["pixel_accuracy"] == pytest.approx(5 / 7)
    assert s["fw_iou"] == pytest.approx((3 * 1 / 2 + 2 * 2 / 3 + 2 * 1 / 2) / 7)
    assert s["per_class"]["reeds"]["precision"] == 1.0 and s["per_class"]["reeds"]["recall"] == 0.5
    assert s["per_class"]["hut"]["pixels"] == 0 and s["per_class"]["background"]["pixels"] == 3

    pred_hut = pred.copy()
    pred_hut[0, 0] = 3  # a class only the prediction has: IoU 0, and it counts
    s2 = scores(confusion(truth, pred_hut, 4), NAMES)
    assert s2["per_class"]["hut"]["iou"] == 0.0 and s2["miou"] < s["miou"]
    assert scores(np.zeros((3, 3), int))["miou"] is None  # nothing scored: no number


def test_the_training_confusion_matrix_agrees_with_evaluation():
    import torchmetrics

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, (3, 16, 16))
    truth[:, :2] = IGNORE
    pred = rng.integers(0, 4, (3, 16, 16))
    tm = torchmetrics.ConfusionMatrix(task="multiclass", num_classes=4, ignore_index=IGNORE)
    tm.update(torch.as_tensor(pred), torch.as_tensor(truth))
    assert (tm.compute().numpy() == confusion(truth, pred, 4)).all()


@pytest.mark.parametrize("kind", ["ce", "dice", "ce_dice", "focal"])
def test_losses_skip_ignored_pixels_learn_and_take_class_weights(kind):
    from wildtrain.families.segmenter.losses import SegmentationLoss

    torch.manual_seed(0)
    target = torch.randint(0, 3, (2, 8, 8))
    target[:, 0] = IGNORE
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    loss = SegmentationLoss(kind, 3, [0.2, 1.0, 2.0], 2.0, IGNORE)
    other = logits.detach().clone()
    other[:, :, 0] += 5.0  # only the ignored row changes
    assert loss(other, target).item() == pytest.approx(loss(logits, target).item(), rel=1e-6)
    opt = torch.optim.Adam([logits], lr=0.3)
    first = loss(logits, target).item()
    for _ in range(60):
        opt.zero_grad()
        loss(logits, target).backward()
        opt.step()
    assert loss(logits, target).item() < 0.5 * first
    assert (logits.argmax(1)[target != IGNORE] == target[target != IGNORE]).float().mean() > 0.95
    unweighted = SegmentationLoss(kind, 3, None, 2.0, IGNORE)
    fresh = torch.randn(2, 3, 8, 8)
    assert loss(fresh, target).item() != pytest.approx(unweighted(fresh, target).item())
    all_ignored = torch.full_like(target, IGNORE)
    assert loss(fresh.requires_grad_(), all_ignored).item() == 0.0


def test_class_weights_from_pixel_counts():
    from wildtrain.families.segmenter.data import class_weights

    counts = np.array([9600, 300, 100, 0])
    w = class_weights(counts, "sqrt_inverse")
    assert np.mean(w) == pytest.approx(1.0) and w[0] < w[1] < w[2] < w[3]
    assert w[1] / w[2] == pytest.approx(np.sqrt(100 / 300))
    inv = class_weights(counts, "inverse")
    assert inv[1] / inv[2] == pytest.approx(100 / 300) and class_weights(counts, "none") is None


def edgy_model(windows: list[np.ndarray], band: int = 4) -> list[np.ndarray]:
    """A stand-in for a network with zero-padding artefacts: right (bright pixels are class 1, p 0.9) inside a
    window, confidently wrong (class 0, p 0.9) within `band` px of the window's edge."""
    out = []
    for w in windows:
        p1 = np.where(w[..., 0] > 128, 0.9, 0.1)
        h, wd = p1.shape
        yy, xx = np.mgrid[:h, :wd]
        edge = np.minimum(np.minimum(yy, h - 1 - yy), np.minimum(xx, wd - 1 - xx)) < band
        p1 = np.where(edge, 0.1, p1)
        out.append(np.stack([1 - p1, p1]).astype(np.float32))
    return out


def drifting_model(windows: list[np.ndarray]) -> list[np.ndarray]:
    """A stand-in whose answer drifts across each window (left edge p 0.1, right edge p 0.9): what a model's
    context does to its output; stitched naively, the drift jumps back at every window border."""
    out = []
    for w in windows:
        p1 = np.broadcast_to(np.linspace(0.1, 0.9, w.shape[1], dtype=np.float32), w.shape[:2])
        out.append(np.stack([1 - p1, p1]))
    return out


def test_overlapping_mask_windows_blend_without_seams(monkeypatch):
    image = np.full((200, 260, 3), 255, np.uint8)  # all class 1
    inner = (slice(4, -4), slice(4, -4))  # the image's own border is an edge of every window that sees it
    (blended,) = slicing.predict_blended(edgy_model, [image], [64], overlap=0.25, batch=5)
    assert blended.shape == (200, 260) and (blended[inner] == 1).all()  # each window edge covered by an interior
    (butted,) = slicing.predict_blended(edgy_model, [image], [64], overlap=0.0, batch=5)
    assert (butted[inner] == 0).sum() > 500  # no overlap: a grid of seams

    (field,) = slicing.predict_blended(drifting_model, [image], [64], overlap=0.25, batch=5, finish=lambda p: p[1])
    assert np.abs(np.diff(field, axis=1)).max() < 0.06  # continuous: no jump where a window ends
    monkeypatch.setattr(slicing, "blend_weight", lambda h, w, ramp: np.ones((h, w), np.float32))
    (flat,) = slicing.predict_blended(edgy_model, [image], [64], overlap=0.25, batch=5)
    assert (flat[inner] == 0).sum() > 100  # plain averaging ties wrong edges with right interiors: seams
    (field,) = slicing.predict_blended(drifting_model, [image], [64], overlap=0.25, batch=5, finish=lambda p: p[1])
    assert np.abs(np.diff(field, axis=1)).max() > 0.2  # and the drift jumps at window borders


def test_blended_windows_of_a_pointwise_model_equal_the_whole_image_and_share_batches():
    rng = np.random.default_rng(1)
    big, small = rng.integers(0, 255, (150, 190, 3), dtype=np.uint8), rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    seen = []

    def pointwise(windows):
        seen.append(len(windows))
        return [np.stack([w[..., 0] / 255.0, w[..., 1] / 255.0, w[..., 2] / 255.0]).astype(np.float32) for w in windows]

    whole = slicing.predict_blended(pointwise, [big, small], [None, None], overlap=0.2, batch=4)
    sliced = slicing.predict_blended(pointwise, [big, small], [64, None], overlap=0.2, batch=4)
    assert (whole[0] == sliced[0]).all() and (whole[1] == sliced[1]).all()
    pieces = len(slicing.windows(190, 150, 64, 0.2)) + 1  # the big image's windows, then the small image whole
    assert seen[0] == 2 and seen[1:] == [4] * (pieces // 4) + ([pieces % 4] if pieces % 4 else [])


def test_class_maps_leave_as_palette_pngs_and_json_rows():
    from wildtrain.serve import as_rows

    mask = np.array([[0, 1, 1], [2, 2, 0]], np.uint8)
    seg = Segmentation(mask)
    assert seg.areas(3) == [2, 2, 2]
    with Image.open(io.BytesIO(seg.png())) as img:
        assert img.mode == "P" and (np.asarray(img) == mask).all()
    card = ModelCard(family="segmenter", task="semantic-segmentation", framework="lightning", architecture="unet",
                     class_names=["background", "water", "reeds"], weights="model.pt", input={"size": 64})
    (row,) = as_rows(card, [seg])
    import json

    json.dumps(row)  # JSON-ready as served
    assert row["areas"] == {"background": 2, "water": 2, "reeds": 2} and (row["height"], row["width"]) == (2, 3)
    with Image.open(io.BytesIO(base64.b64decode(row["mask_png"]))) as img:
        assert (np.asarray(img) == mask).all()
