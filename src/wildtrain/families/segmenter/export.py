"""ONNX and TorchScript copies of the U-Net (publishing checks both against PyTorch: wildtrain.publish.parity).

Both take a normalized float32 batch `images` (N, 3, H, W), H and W multiples of 32 (the card's `size` is what
it was trained at), and return `logits` (N, classes, H, W); batch, height and width are dynamic. ONNX goes
through the TorchScript-based exporter (`dynamo=False`), which needs no extra package.
"""

from __future__ import annotations

from pathlib import Path

import torch

ONNX_FILE, TORCHSCRIPT_FILE = "model.onnx", "model.torchscript.pt"


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
