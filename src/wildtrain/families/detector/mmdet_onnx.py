"""ONNX and TorchScript for MMDetection's anchor-based single-stage detectors (RetinaNet), without mmdeploy.

The exported graph is the network and the box decoding; non-maximum suppression stays outside it. It takes a
normalized RGB batch [N, 3, size, size] letterboxed like a YOLO input, and gives the same layout as a YOLO raw
head, [N, 4 + classes, priors]: (cx, cy, w, h) in input pixels, then per-class sigmoid scores in the model card's
class order. So the parity check (boxes after NMS included), the .dlpk's inference function, the STAC item and the
OpenVINO IR treat it as they treat a YOLO export. The anchors are computed once for `size` and kept as a constant.

Not covered, and said so in the publication: two-stage heads (Faster R-CNN: RoI pooling), anchor-free heads with
other box coders (RTMDet, FCOS) and query-based ones (DETR, DINO): those export through mmdeploy.

The export's boxes are what this graph gives after a class-aware NMS; `wildtrain predict` runs mmdet's own
post-processing (top-k per level before NMS, images resized without padding), so the two can differ on
near-threshold boxes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from wildtrain.contract import ExportIO

ONNX_FILE, TORCHSCRIPT_FILE = "model.onnx", "model.torchscript.pt"


def unsupported(model) -> str | None:
    """Why this mmdet model has no ONNX export here (None: it has one)."""
    head = getattr(model, "bbox_head", None)
    if head is None or hasattr(model, "roi_head") or hasattr(model, "rpn_head"):
        return "two-stage and query-based mmdet models export only through mmdeploy (compiled mmcv ops)"
    coder = type(getattr(head, "bbox_coder", None)).__name__
    prior = type(getattr(head, "prior_generator", None)).__name__
    if coder != "DeltaXYWHBBoxCoder" or prior != "AnchorGenerator" or not getattr(head, "use_sigmoid_cls", False):
        return (f"the ONNX export covers anchor-based single-stage heads (RetinaNet); {type(head).__name__} "
                f"({coder}) exports only through mmdeploy")
    return None


def network(model, size: int, label_to_class, num_classes: int):
    """The torch module that is exported: features, head, anchors, decoding; scores reordered to the card's classes
    (`label_to_class`: mmdet label -> card class index, a list or a dict)."""
    import torch
    from mmdet.models.task_modules.coders.delta_xywh_bbox_coder import delta2bbox

    class Decoded(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            with torch.no_grad():
                sizes = [f.shape[-2:] for f in model.extract_feat(torch.zeros(1, 3, size, size))]
            self.register_buffer("priors", torch.cat(model.bbox_head.prior_generator.grid_priors(sizes, device="cpu")))
            labels = dict(enumerate(label_to_class)) if isinstance(label_to_class, list) else label_to_class
            order = [next(int(k) for k, c in labels.items() if int(c) == j) for j in range(num_classes)]
            self.register_buffer("order", torch.tensor(order))

        def forward(self, x):
            head = self.model.bbox_head
            cls, reg = head(self.model.extract_feat(x))
            n, c = x.shape[0], head.cls_out_channels
            scores = torch.cat([t.permute(0, 2, 3, 1).reshape(n, -1, c) for t in cls], 1).sigmoid()
            deltas = torch.cat([t.permute(0, 2, 3, 1).reshape(n, -1, 4) for t in reg], 1)
            coder = head.bbox_coder  # its batched decode imports a module mmdet 3 no longer has: the 2-D one
            boxes = delta2bbox(self.priors.repeat(n, 1), deltas.reshape(-1, 4), coder.means, coder.stds, (size, size),
                               16 / 1000, coder.clip_border, coder.add_ctr_clamp, coder.ctr_clamp).reshape(n, -1, 4)
            xywh = torch.cat([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]], -1)
            return torch.cat([xywh, scores.index_select(2, self.order)], -1).transpose(1, 2)

    return Decoded().eval()


def export(model, config, size: int, label_to_class, class_names: list[str], out_dir: Path,
           images: Sequence[np.ndarray]) -> tuple[dict[str, Path], ExportIO, tuple[np.ndarray, np.ndarray]]:
    """The files, what they take and give, and the PyTorch graph's own output on `images` (letterboxed)."""
    import torch
    from ultralytics.data.augment import LetterBox  # the YOLO export's letterbox (centred, 114 border)

    pre = config.model.data_preprocessor
    mean = tuple(float(m) / 255 for m in pre.get("mean", (0, 0, 0)))  # mmdet's are on 0-255 RGB (bgr_to_rgb)
    std = tuple(float(s) / 255 for s in pre.get("std", (255, 255, 255)))
    io = ExportIO(size=size, resize="letterbox", mean=mean, std=std, output="yolo",
                  output_dims=("batch", "box_and_class_scores", "anchor"),
                  output_shape=(-1, 4 + len(class_names), -1), classes=tuple(class_names),
                  input_name="images", output_name="output0")
    net = network(model.cpu().eval(), size, label_to_class, len(class_names))
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path, ts_path = out_dir / ONNX_FILE, out_dir / TORCHSCRIPT_FILE
    example = torch.zeros(2, 3, size, size)
    with torch.no_grad():
        torch.onnx.export(net, (example,), str(onnx_path), dynamo=False, input_names=[io.input_name],
                          output_names=[io.output_name], opset_version=17,
                          dynamic_axes={io.input_name: {0: "batch"}, io.output_name: {0: "batch"}})
        torch.jit.save(torch.jit.trace(net, example, check_trace=False), str(ts_path))
        boxed = np.stack([LetterBox((size, size), auto=False)(image=im) for im in images]).astype(np.float32) / 255
        x = np.ascontiguousarray(((boxed - np.float32(mean)) / np.float32(std)).transpose(0, 3, 1, 2), np.float32)
        ref = net(torch.from_numpy(x)).numpy()
    return {"onnx": onnx_path, "torchscript": ts_path}, io, (x, ref)
