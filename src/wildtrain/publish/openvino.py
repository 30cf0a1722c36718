"""OpenVINO IR (model.xml + model.bin), the usual CPU deployment target, made from the ONNX export of any family.

One route for every family: the ONNX file the family already exported (and that the parity check runs) is read by
OpenVINO's own ONNX frontend (`openvino.convert_model`) and saved as IR in full precision: `save_model` halves the
weights to FP16 by default, which would move logits by more than the parity tolerance. The IR is then checked
against PyTorch like every other export (parity.py), so a conversion that changes the answers is never registered.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from wildtrain.contract import Exported

XML_FILE, BIN_FILE = "model.xml", "model.bin"
FORMAT, WEIGHTS = "openvino", "openvino_weights"  # Exported.files keys: the IR (.xml) and its weights (.bin)


def convert(onnx_path: Path, out_dir: Path) -> tuple[Path, Path]:
    import openvino as ov

    out_dir.mkdir(parents=True, exist_ok=True)
    xml = out_dir / XML_FILE
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml), compress_to_fp16=False)
    return xml, out_dir / BIN_FILE


def add(exported: Exported, out_dir: Path) -> Exported:
    """`exported` with an OpenVINO IR beside each ONNX file (a composite's parts each); unchanged without ONNX."""
    if exported.parts:
        parts = {role: add(part, out_dir / role) for role, part in exported.parts.items()}
        return dataclasses.replace(exported, parts=parts)
    if "onnx" not in exported.files:
        why = exported.unavailable.get("onnx")
        if why is None:
            return exported
        return dataclasses.replace(exported, unavailable={**exported.unavailable, FORMAT: f"made from ONNX: {why}"})
    xml, weights = convert(exported.files["onnx"], out_dir / FORMAT)
    return dataclasses.replace(exported, files={**exported.files, FORMAT: xml, WEIGHTS: weights})


def run(xml: Path, x: np.ndarray) -> np.ndarray:
    """The IR compiled for the CPU in float32; a model with a fixed batch size is fed that many images at a time.

    The CPU plugin computes in bf16 by default where the CPU has bf16 instructions (AVX512-BF16, AMX), which moves
    logits by ~1e-3: the precision is pinned so that the check measures the export, not the CPU it runs on."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    batch = compiled.input(0).get_partial_shape()[0]
    step = batch.get_length() if batch.is_static else len(x)
    out = compiled.output(0)
    return np.concatenate([compiled(x[i:i + step])[out] for i in range(0, len(x), step)])
