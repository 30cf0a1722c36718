"""ONNX and TorchScript copies of the U-Net, and a parity check of both against PyTorch.

Both take a normalized float32 batch `images` (N, 3, H, W), H and W multiples of 32 (the card's `size` is what
it was trained at), and return `logits` (N, classes, H, W); batch, height and width are dynamic. ONNX goes
through the TorchScript-based exporter (`dynamo=False`), which needs no extra package.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

ONNX_FILE, TORCHSCRIPT_FILE = "model.onnx", "model.torchscript.pt"
PARITY_TOLERANCE = 1e-3  # max |logit difference|: a U-Net sums more products than a classifier head


def export(model: torch.nn.Module, imgsz: int, out_dir: Path) -> dict[str, Path]:
    model = model.eval().cpu()
    example = torch.randn(2, 3, imgsz, imgsz)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path, ts_path = out_dir / ONNX_FILE, out_dir / TORCHSCRIPT_FILE
    axes = {"images": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "height", 3: "width"}}
    with torch.no_grad():
        torch.onnx.export(model, (example,), str(onnx_path), dynamo=False, input_names=["images"],
                          output_names=["logits"], dynamic_axes=axes, opset_version=17)
        torch.jit.save(torch.jit.trace(model, example), str(ts_path))
    return {"onnx": onnx_path, "torchscript": ts_path}


def parity(model: torch.nn.Module, exported: dict[str, Path], batch: torch.Tensor) -> dict[str, float]:
    """Max |logit difference| of each export vs the PyTorch model on the same batch."""
    import onnxruntime as ort

    with torch.no_grad():
        ref = model.eval().cpu()(batch).numpy()
        ts = torch.jit.load(str(exported["torchscript"]), map_location="cpu")(batch).numpy()
    session = ort.InferenceSession(str(exported["onnx"]), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {"images": batch.numpy().astype(np.float32)})[0]
    return {"onnx": float(np.abs(onnx_out - ref).max()), "torchscript": float(np.abs(ts - ref).max())}
