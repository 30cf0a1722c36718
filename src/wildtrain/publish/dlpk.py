"""An Esri deep-learning package (.dlpk) per published model: a zip of an .emd (Esri model definition), the ONNX
model(s) and the Python raster function ArcGIS calls (`esri_inference.py`, as WildtrainInference.py).

Why ONNX and not the PyTorch weights: the package must run in ArcGIS Pro's own Python, which has numpy and
onnxruntime but neither wildtrain nor Ultralytics/MMDetection; the ONNX files are the exports that passed the
parity check, and the inference function decodes them exactly as that check did. A model without ONNX exports
(MMDetection without mmdeploy) gets no package, and the STAC item and model card say why.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from wildtrain.contract import Exported, ExportIO, ModelCard
from wildtrain.io import atomic_path
from wildtrain.publish.release import Context, Release
from wildtrain.publish.stac import palette
from wildtrain.tasks import task_of_output

FUNCTION = "WildtrainInference.py"  # ArcGIS loads the class named after the file
SOURCE = Path(__file__).with_name("esri_inference.py")
VALID_MODEL_TYPES = ("ObjectDetection", "ObjectClassification", "ClassifyPixels")  # what ArcGIS accepts
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed entry dates: the same model gives the same bytes


def _io(io: ExportIO) -> dict:
    return {"size": io.size, "resize": io.resize, "mean": None if io.mean is None else list(io.mean),
            "std": None if io.std is None else list(io.std)}


def why_not(exported: Exported) -> str | None:
    """None when every part has an ONNX export to package; else the reason."""
    if exported.io is not None and not task_of_output(exported.io.output).esri_model_type:
        return f"no ArcGIS inference function for {task_of_output(exported.io.output).name} models"
    for role, part in (exported.parts or {"": exported}).items():
        if "onnx" not in part.files or part.io is None:
            reason = part.unavailable.get("onnx", "no ONNX export (register export: false)")
            return f"{role + ': ' if role else ''}{reason}"
    return None


def emd(card: ModelCard, exported: Exported, release: Release, context: Context, model_dir: Path) -> dict:
    """The .emd: Esri's keys, and a `Wildtrain` section the inference function reads everything else from."""
    main = exported.parts.get("detector", exported) if exported.parts else exported
    io = main.io
    kind = task_of_output(io.output).esri_model_type
    colors = palette(len(io.classes))
    spec = {"format": 1, "output": io.output, "input": _io(io), "class_names": list(io.classes),
            "conf": context.predict["conf"], "iou": context.predict["iou"], "max_det": context.predict["max_det"]}
    if "classifier" in exported.parts:
        cls = exported.parts["classifier"].io
        crop = ModelCard.load(model_dir / card.components.get("classifier", "classifier")).input.get("crop") or {}
        spec["classifier"] = {"ModelFile": "classifier.onnx", "input": _io(cls), "class_names": list(cls.classes),
                              "species": [list(io.classes).index(n) if n in io.classes else -1 for n in cls.classes],
                              "padding": float(crop.get("padding", 0.15)), "min_size": int(crop.get("min_size", 16))}
    out = {"Framework": "ONNX", "ModelConfiguration": f"wildtrain-{card.family}",
           "ModelFile": "detector.onnx" if exported.parts else "model.onnx", "InferenceFunction": FUNCTION,
           "ModelType": kind, "ModelName": release.model_name,
           "Description": f"{release.label}: {card.architecture} ({card.framework}), wildtrain {card.family}",
           "Version": str(release.version) if release.version is not None else "unregistered",
           "ImageHeight": io.size, "ImageWidth": io.size, "ExtractBands": [0, 1, 2], "DataRange": [0, 255],
           "Classes": [{"Value": i + 1, "Name": n, "Color": list(colors[i])} for i, n in enumerate(io.classes)],
           "Wildtrain": spec}
    if kind == "ObjectDetection":
        out["Threshold"] = context.predict["conf"]
    return out


def write(path: Path, definition: dict, exported: Exported, extra: dict[str, Path]) -> Path:
    """Zip the .emd, the ONNX model(s), the inference function and `extra` files (name -> file), atomically."""
    import json

    if definition["ModelType"] not in VALID_MODEL_TYPES:
        raise ValueError(f"ModelType {definition['ModelType']} is not one ArcGIS accepts")
    entries: dict[str, bytes] = {f"{definition['ModelName']}.emd": (json.dumps(definition, indent=2) + "\n").encode(),
                                 FUNCTION: SOURCE.read_bytes()}
    if exported.parts:
        for role, part in exported.parts.items():
            entries[f"{role}.onnx"] = part.files["onnx"].read_bytes()
    else:
        entries["model.onnx"] = exported.files["onnx"].read_bytes()
    entries.update({name: f.read_bytes() for name, f in extra.items()})
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
            for name in sorted(entries):
                info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
                info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
                z.writestr(info, entries[name])
    return path
