"""Every export (ONNX through onnxruntime, TorchScript, OpenVINO IR on its CPU plugin) run on the same batch of real held-out images as the PyTorch
model, and refused unless it gives the same answers: scores and logits within TOLERANCE; for YOLO detectors the
raw head's class scores within TOLERANCE for every anchor, and the boxes after NMS (the NMS the .dlpk's inference
function applies, at the evaluation's thresholds) each matched at IoU >= BOX_IOU with the same class.

Which boxes survive NMS is decided once, on PyTorch's output, and the export's boxes at those anchors are compared:
with every score within 1e-4, an NMS run on the export's own output can only differ where a decision sits on a
threshold (a score at `conf`, two classes or an overlap within noise of each other), which is float noise, not a
broken export. How often that happened is reported (`nms_differs`), not refused.

What a family provides is in `Exported` (wildtrain/contract.py): the files, what they take and give (`io.output`
says how to compare), and PyTorch's own output on the batch. A segmentation family's per-pixel logits are
compared like a classifier's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wildtrain.errors import WildtrainError
from wildtrain.contract import Exported
from wildtrain.publish.esri_inference import _iou_one, decode_yolo
from wildtrain.tasks import task_of_output

TOLERANCE = 1e-4  # max |difference| of scores and logits
BOX_IOU = 0.99  # detectors: each box after NMS matched (same anchor, same class) at least this well
CHECKED = ("onnx", "torchscript", "openvino")


def run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    """onnxruntime on the CPU; a model exported with a fixed batch size is fed that many at a time."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    step = inp.shape[0] if isinstance(inp.shape[0], int) else len(x)
    return np.concatenate([session.run(None, {inp.name: x[i:i + step]})[0] for i in range(0, len(x), step)])


def run_torchscript(path: Path, x: np.ndarray) -> np.ndarray:
    import torch

    model = torch.jit.load(str(path), map_location="cpu").eval()
    with torch.inference_mode():
        out = model(torch.from_numpy(x))
    out = out[0] if isinstance(out, (list, tuple)) else out
    return out.float().numpy()


def run_openvino(path: Path, x: np.ndarray) -> np.ndarray:
    from wildtrain.publish import openvino

    return openvino.run(path, x)


RUNNERS = {"onnx": run_onnx, "torchscript": run_torchscript, "openvino": run_openvino}


def match_boxes(ref: np.ndarray, out: np.ndarray, nms: dict) -> dict:
    """The boxes PyTorch's output keeps after NMS, each compared with the export's box at the same anchor: IoU and
    class (a class whose score ties the runner-up within TOLERANCE may differ)."""
    total = matched = differs = 0
    worst = 1.0
    for r_img, o_img in zip(ref, out):
        boxes, _, classes, anchors = decode_yolo(r_img[None], nms["conf"], nms["iou"], nms["max_det"], anchors=True)[0]
        own = decode_yolo(o_img[None], nms["conf"], nms["iou"], nms["max_det"], anchors=True)[0][3]
        differs += len(set(anchors.tolist()) ^ set(own.tolist()))
        total += len(boxes)
        if not len(boxes):
            continue
        cx, cy, w, h = o_img[:4, anchors].astype(np.float64)
        theirs = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
        scores = r_img[4:, anchors].T
        top2 = np.sort(scores, axis=1)[:, -2:] if scores.shape[1] > 1 else np.zeros((len(anchors), 2))
        ambiguous = (top2[:, 1] - top2[:, 0]) <= TOLERANCE
        same_class = (o_img[4:, anchors].argmax(0) == classes) | ambiguous
        for k in range(len(boxes)):
            iou = float(_iou_one(boxes[k], theirs[k:k + 1])[0])
            worst = min(worst, iou)
            matched += int(iou >= BOX_IOU and bool(same_class[k]))
    return {"boxes": total, "matched": matched, "min_iou": worst, "nms_differs": differs}


def compare(kind: str, ref: np.ndarray, out: np.ndarray, nms: dict) -> dict:
    """One export's output (`kind`: ExportIO.output) against PyTorch's: what was measured and whether it passes,
    by the check its task names (wildtrain.tasks)."""
    if out.shape != ref.shape:
        return {"ok": False, "why": f"output shape {list(out.shape)} != PyTorch's {list(ref.shape)}"}
    return CHECKS[task_of_output(kind).parity](ref, out, nms)


def compare_boxes(ref: np.ndarray, out: np.ndarray, nms: dict) -> dict:
    """Detectors: scores within TOLERANCE, and every box PyTorch keeps after NMS matched by the export's."""
    diff = float(np.abs(out[:, 4:] - ref[:, 4:]).max())
    boxes = match_boxes(ref, out, nms)
    report = {"max_abs_diff": diff, "box_max_abs_diff_px": float(np.abs(out[:, :4] - ref[:, :4]).max()), **boxes}
    if diff > TOLERANCE:
        return {**report, "ok": False, "why": f"max |score difference| {diff:.1e} > {TOLERANCE:g}"}
    if boxes["matched"] < boxes["boxes"]:
        return {**report, "ok": False, "why": f"{boxes['boxes'] - boxes['matched']} of {boxes['boxes']} boxes "
                                              f"after NMS differ (IoU < {BOX_IOU} or another class)"}
    return {**report, "ok": True}


def compare_values(ref: np.ndarray, out: np.ndarray, nms: dict) -> dict:
    """Logits (per image or per pixel): every value within TOLERANCE."""
    diff = float(np.abs(out - ref).max())
    report = {"max_abs_diff": diff}
    if diff > TOLERANCE:
        return {**report, "ok": False, "why": f"max |logit difference| {diff:.1e} > {TOLERANCE:g}"}
    return {**report, "ok": True}


MASK_COEFFICIENTS = 32  # YOLO-seg heads: the last 32 rows of the first output (Ultralytics' Segment nm)


def compare_instances(ref: np.ndarray, out: np.ndarray, nms: dict) -> dict:
    """YOLO-seg: its boxes and class scores checked as a detector's, and the mask coefficients of every anchor within
    TOLERANCE (the prototypes they weight come from the same convolutions that make them)."""
    k = ref.shape[1] - MASK_COEFFICIENTS
    report = compare_boxes(ref[:, :k], out[:, :k], nms)
    coef = float(np.abs(out[:, k:] - ref[:, k:]).max())
    report["mask_coefficients_max_abs_diff"] = coef
    if report["ok"] and coef > TOLERANCE:
        return {**report, "ok": False, "why": f"max |mask coefficient difference| {coef:.1e} > {TOLERANCE:g}"}
    return report


CHECKS = {"boxes": compare_boxes, "values": compare_values, "instances": compare_instances}  # Task.parity -> check


def check(exported: Exported, nms: dict, where: str = "") -> dict:
    """Run and compare every checked export (a composite's parts each); raise one line on the first that fails.
    `nms`: conf, iou, max_det for detectors' boxes."""
    if exported.parts:
        return {role: check(part, nms, f"{where}{role}/") for role, part in exported.parts.items()}
    report: dict = {}
    formats = [f for f in CHECKED if f in exported.files]
    if not formats:
        return report
    if exported.reference is None or exported.io is None:
        raise WildtrainError(f"{where}{exported.files[formats[0]].name}: exported without a reference batch to "
                             f"check it against PyTorch; not registered")
    x, ref = exported.reference
    report["images"] = int(len(x))
    report["tolerance"] = TOLERANCE
    if task_of_output(exported.io.output).boxes:
        report.update(box_iou=BOX_IOU, nms=dict(nms))
    for fmt in formats:
        path = exported.files[fmt]
        try:
            out = RUNNERS[fmt](path, x)
        except Exception as e:  # an export that does not even run is a failed export
            raise WildtrainError(f"{where}{path.name}: the {fmt} export does not run "
                                 f"({' '.join(str(e).split())[:200]}); not registered") from None
        result = compare(exported.io.output, ref, out, nms)
        if not result["ok"]:
            raise WildtrainError(f"{where}{path.name}: {fmt} export differs from the PyTorch model on {len(x)} "
                                 f"held-out images: {result['why']}; not registered")
        report[fmt] = {k: v for k, v in result.items() if k != "ok"}
    return report


def summary(report: dict, prefix: str = "") -> list[str]:
    """One short line per checked export, for logs and the model card."""
    lines = []
    for key, value in report.items():
        if key in CHECKED:
            extra = f", {value['matched']}/{value['boxes']} boxes matched" if "boxes" in value else ""
            lines.append(f"{prefix}{key}: max |diff| {value['max_abs_diff']:.1e}{extra}")
        elif isinstance(value, dict) and key not in ("nms",):
            lines += summary(value, f"{prefix}{key} ")
    return lines
