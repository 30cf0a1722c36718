"""Shared by the publishing tests: tiny real PyTorch models with their real exports, a stand-in for what ArcGIS
passes a raster function, and a reader for the model card's Markdown tables."""

from __future__ import annotations

import importlib.util
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import torch

from wildtrain.contract import Exported, ExportIO


class TinyClassifier(torch.nn.Module):
    def __init__(self, classes: int, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        self.head = torch.nn.Linear(8, classes)

    def forward(self, x):
        return self.head(self.features(x))


class TinySegmenter(torch.nn.Module):
    """Per-pixel class logits [N, classes, H, W], the output a segmentation family exports."""

    def __init__(self, classes: int, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                       torch.nn.Conv2d(8, classes, 1))

    def forward(self, x):
        return self.net(x)


def export_tiny(model: torch.nn.Module, io: ExportIO, out: Path, images: list[np.ndarray],
                reference_model: torch.nn.Module | None = None) -> Exported:
    """Real ONNX (dynamic batch) and TorchScript exports, and `reference_model`'s (default: the same model's)
    output on `images` preprocessed as `io` says — what a family's export hands to publishing."""
    from wildtrain.publish.esri_inference import to_input

    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example = torch.zeros(2, 3, io.size, io.size)
    onnx_file, ts_file = out / "model.onnx", out / "model.torchscript.pt"
    with torch.no_grad():
        torch.onnx.export(model, (example,), str(onnx_file), dynamo=False, input_names=[io.input_name],
                          output_names=[io.output_name], dynamic_axes={io.input_name: {0: "batch"}},
                          opset_version=17)
        torch.jit.save(torch.jit.trace(model, example), str(ts_file))
    x, _ = to_input(images, {"size": io.size, "resize": io.resize, "mean": io.mean, "std": io.std})
    with torch.no_grad():
        ref = (reference_model or model).eval()(torch.from_numpy(x)).numpy()
    return Exported(files={"onnx": onnx_file, "torchscript": ts_file}, io=io, reference=(x, ref),
                    total_parameters=sum(p.numel() for p in model.parameters()))


def unpack(dlpk: Path, dst: Path) -> tuple[dict, Path, object]:
    """Unzip a .dlpk; return its .emd, the .emd's path and the inference function's class, loaded from the
    package's own file (not from wildtrain)."""
    shutil.rmtree(dst, ignore_errors=True)
    with zipfile.ZipFile(dlpk) as z:
        for name in z.namelist():  # what ArcGIS unpacks: plain relative members only
            assert not name.startswith(("/", "\\")) and ".." not in Path(name).parts and ":" not in name, name
        z.extractall(dst)
    emd_file = next(dst.glob("*.emd"))
    emd = json.loads(emd_file.read_text())
    function = dst / emd["InferenceFunction"]
    spec = importlib.util.spec_from_file_location(function.stem + f"_{abs(hash(str(dst)))}", function)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return emd, emd_file, getattr(module, function.stem)


class ArcGIS:
    """What ArcGIS Pro does with a raster function, for one tile or a few chips: initialize with the .emd and a
    device, read the parameters, configure with the tool's values, then hand pixel blocks (bands, H, W) with a
    mask to vectorize (Detect/Classify Objects) or updatePixels (Classify Pixels)."""

    def __init__(self, function_class, emd_file: Path, **tool_values):
        self.f = function_class()
        self.f.initialize(model=str(emd_file), device=-1)
        self.params = self.f.getParameterInfo()
        values = {p["name"]: p["value"] for p in self.params if "value" in p}
        self.config = self.f.getConfiguration(**{**values, **tool_values})
        self.fields = json.loads(self.f.getFields())["fields"]

    def block(self, image: np.ndarray) -> np.ndarray:
        pad = self.config["padding"]
        tile = image[:self.config["ty"] + 2 * pad, :self.config["tx"] + 2 * pad]
        return np.ascontiguousarray(tile[..., list(self.config["extractBands"])].transpose(2, 0, 1))

    def detect(self, image: np.ndarray) -> list[dict]:
        pixels = self.block(image)
        out = self.f.vectorize(raster_pixels=pixels, raster_mask=np.ones_like(pixels[:1]))
        return json.loads(out["output_vectors"])["features"]

    def classify(self, chips: list[np.ndarray]) -> list[dict]:
        blocks = [np.ascontiguousarray(c.transpose(2, 0, 1)) for c in chips]
        out = self.f.vectorize(rasters_pixels=blocks, rasters_mask=[np.ones_like(b[:1]) for b in blocks])
        return json.loads(out["output_vectors"])["features"]

    def classify_pixels(self, image: np.ndarray) -> np.ndarray:
        pixels = self.block(image)
        out = self.f.updatePixels((0, 0), pixels.shape[1:], {"pixelType": "u1"}, raster_pixels=pixels,
                                  raster_mask=np.ones_like(pixels[:1]))
        return out["output_pixels"]


def box_of(feature: dict) -> list[float]:
    ring = np.asarray(feature["geometry"]["rings"][0], float)
    return [ring[:, 0].min(), ring[:, 1].min(), ring[:, 0].max(), ring[:, 1].max()]


def iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
    return iw * ih / union if union > 0 else 0.0


def markdown_table(text: str, heading: str, first_column: str) -> dict[str, dict[str, str]]:
    """The first table after `heading` whose first header cell is `first_column`: row name -> column -> cell."""
    lines = text[text.index(heading):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_column} |"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header[1:], cells[1:]))
    return rows
