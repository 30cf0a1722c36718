"""ONNX and TorchScript copies of a network that takes a normalized float32 batch `images` (N, 3, H, W) and returns
`logits`: (N, classes) for a classifier, (N, classes, H, W) for a segmenter. Publishing checks both against
PyTorch (wildtrain.publish.parity). The batch dimension is dynamic, and so are height and width when
`spatial` (a fully convolutional network: any multiple of its stride). ONNX goes through the TorchScript-based
exporter (`dynamo=False`), which needs no extra package.
"""

from __future__ import annotations

from pathlib import Path

import torch

ONNX_FILE, TORCHSCRIPT_FILE = "model.onnx", "model.torchscript.pt"


def export(model: torch.nn.Module, imgsz: int, out_dir: Path, spatial: bool = False) -> dict[str, Path]:
    model = model.eval().cpu()
    example = torch.randn(2, 3, imgsz, imgsz)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path, ts_path = out_dir / ONNX_FILE, out_dir / TORCHSCRIPT_FILE
    dynamic = {0: "batch", 2: "height", 3: "width"} if spatial else {0: "batch"}
    with torch.no_grad():
        torch.onnx.export(model, (example,), str(onnx_path), dynamo=False, input_names=["images"],
                          output_names=["logits"], dynamic_axes={"images": dynamic, "logits": dynamic},
                          opset_version=17)
        torch.jit.save(torch.jit.trace(model, example), str(ts_path))
    return {"onnx": onnx_path, "torchscript": ts_path}
