"""A STAC item with the Machine Learning Model extension (STAC-MLM) per published model, and its offline validation.

The item describes what the exported models take and give (mlm:input, mlm:output, from the family's `ExportIO`),
names its assets with their artifact types, framework and version (the ONNX and TorchScript exports, the Esri
package, the model card, the registered weights), and links the MLflow run and model version, the git commit and
the dataset hash. `validate` checks it with stac-model's pydantic models (the maintained MLM validator that works
offline; pystac's validate() fetches JSON schemas over the network) plus the MLM rules those models do not encode.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from wildtrain.errors import WildtrainError
from wildtrain.contract import Exported, ExportIO, ModelCard
from wildtrain.publish.release import Context, Release, pretrained_source
from wildtrain.tasks import task_of, task_of_output

STAC_VERSION = "1.1.0"
FILE_EXTENSION = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
BANDS = ("red", "green", "blue")
ARTIFACTS = {  # format -> (mlm:artifact_type, media type, mlm:framework, its version)
    "onnx": ("onnx", "application/octet-stream; application=onnx", "ONNX", "onnx"),
    "torchscript": ("torch.jit.script", "application/octet-stream; framework=pytorch", "PyTorch", "torch"),
    "openvino": ("openvino", "application/xml; application=openvino-ir", "OpenVINO", "openvino"),
}
NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9_.-]+[a-zA-Z0-9]$")  # mlm:name
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")


def palette(n: int) -> list[tuple[int, int, int]]:
    """Distinct, stable colours per class index (the same in the .emd and the STAC classes)."""
    base = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
            (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180)]
    return [base[i % len(base)] for i in range(n)]


def _version(module: str) -> str:
    import importlib
    import importlib.metadata

    if module == "openvino":  # its __version__ carries a build suffix with slashes; the release is the package's
        return importlib.metadata.version("openvino")
    return str(importlib.import_module(module).__version__)


def model_input(io: ExportIO, name: str) -> dict:
    """mlm:input for an export: RGB, [batch, channel, height, width] float32, the scaling predict applies."""
    if io.mean is None:
        scaling = [{"type": "scale", "value": 255}]
    else:  # (x / 255 - mean) / std per band, written on the 0-255 values MLM scales
        scaling = [{"type": "z-score", "mean": round(m * 255, 6), "stddev": round(s * 255, 6)}
                   for m, s in zip(io.mean, io.std)]
    out = {"name": name, "bands": list(BANDS),
           "input": {"shape": [-1, 3, io.size, io.size], "dim_order": ["batch", "channel", "height", "width"],
                     "data_type": "float32"},
           "value_scaling": scaling, "resize_type": "interpolation-linear"}
    if io.resize == "letterbox":
        out["pre_processing_function"] = {
            "format": "python", "expression": "WildtrainInference.py:letterbox",
            "description": f"long side resized to {io.size} px keeping the aspect ratio, centred on a "
                           f"{io.size}x{io.size} canvas filled with 114"}
    return out


def model_output(io: ExportIO, name: str, class_names: list[str]) -> dict:
    colors = palette(len(class_names))
    task = task_of_output(io.output)
    return {"name": name, "tasks": [task.stac_task],
            "result": {"shape": list(io.output_shape), "dim_order": list(io.output_dims), "data_type": "float32"},
            "classification:classes": [{"value": i, "name": n, "description": n,
                                        "color_hint": "%02X%02X%02X" % colors[i]} for i, n in enumerate(class_names)],
            "post_processing_function": {"format": "python", "expression": task.post_processing}}


def mlm_name(name: str) -> str:
    """The registered name as MLM allows it (letters, digits, `_.-`; a letter first), e.g. `My model` -> `My-model`."""
    clean = re.sub(r"[^a-zA-Z0-9_.-]+", "-", name).strip("-_.")
    return clean if NAME.match(clean) else f"model-{clean}".rstrip("-_.") if clean else "wildtrain-model"


def checksum(path: Path) -> str:
    """file:checksum: a sha2-256 multihash (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return "1220" + h.hexdigest()


def _asset(path: Path, href: str, title: str, media: str, roles: list[str], **extra) -> dict:
    return {"href": href, "title": title, "type": media, "roles": roles, "file:size": path.stat().st_size,
            "file:checksum": checksum(path), **extra}


def _links(release: Release) -> list[dict]:
    links = []
    if release.run_id:
        links.append({"rel": "mlflow-run", "href": f"runs:/{release.run_id}", "type": "application/json",
                      "title": f"MLflow run {release.run_id}" + (f" (tracking {release.tracking_uri})"
                                                                 if release.tracking_uri else "")})
    if release.model_uri:
        links.append({"rel": "mlflow-model-version", "href": release.model_uri,
                      "title": f"MLflow registered model version {release.label}"})
    commit = release.git_commit
    remote = (release.git_remote or "").removesuffix(".git")
    href = f"{remote}/commit/{commit}" if remote.startswith("https://") else f"urn:git:commit:{commit}"
    links.append({"rel": "git-commit", "href": href, "title": f"git commit {commit}"
                  + (" (the work tree had uncommitted changes)" if release.git_dirty == "true" else "")})
    links.append({"rel": "dataset", "href": f"urn:sha256:{release.dataset_hash or 'unknown'}",
                  "title": f"training data '{release.data_source}': dataset sha256 {release.dataset_hash}, DVC md5 "
                           f"{release.data_source_md5}"})
    return links


def item(card: ModelCard, exported: Exported, parity: dict, release: Release, context: Context,
         files: dict[str, Path], folder: Path, dlpk_reason: str | None = None) -> dict:
    """The STAC-MLM item. `files`: asset key -> file in `folder` (exports by format or role-format, "dlpk",
    "card", "parity", "config"); `dlpk_reason`: why there is no .dlpk."""
    import torch

    parts = exported.parts or {"": exported}
    inputs, outputs, assets = [], [], {}
    for role, part in parts.items():
        prefix = f"{role}-" if role else ""
        if part.io is not None:
            inputs.append(model_input(part.io, f"{role} {part.io.input_name}".strip()))
            outputs.append(model_output(part.io, f"{role} {part.io.output_name}".strip(), list(part.io.classes)))
        for fmt, (artifact, media, framework, module) in ARTIFACTS.items():
            key = f"{prefix}{fmt}"
            if key in files:
                assets[key] = _asset(files[key], files[key].relative_to(folder).as_posix(),
                                     f"{role or card.family} {fmt} export (checked against PyTorch)", media,
                                     ["mlm:model", "mlm:compiled"], **{"mlm:artifact_type": artifact,
                                                                        "mlm:framework": framework,
                                                                        "mlm:framework_version": _version(module)})
    runnable = any("mlm:model" in a["roles"] for a in assets.values())
    weights = {"href": release.model_uri or f"model folder ({card.weights or 'composite'})",
               "title": "the wildtrain model folder: PyTorch weights + model.json (MLflow pyfunc; "
                        "`wildtrain predict --model` or `mlflow.pyfunc.load_model`)",
               "type": "application/octet-stream; framework=pytorch",
               "roles": ["mlm:weights", "mlm:checkpoint"] + ([] if runnable else ["mlm:model"]),
               "mlm:artifact_type": "torch.save", "mlm:framework": "PyTorch",
               "mlm:framework_version": _version("torch")}
    assets["weights"] = weights
    documents = {"dlpk": ("Esri deep learning package (ArcGIS Pro: Detect/Classify ... Using Deep Learning)",
                          "application/zip", ["esri-dlpk"]),
                 "card": ("model card", "text/markdown", ["metadata", "documentation"]),
                 "parity": ("export parity report", "application/json", ["metadata"]),
                 "config": ("framework config of the weights", "text/x-python", ["metadata"]),
                 "openvino_weights": ("OpenVINO IR weights (the .bin its .xml reads)", "application/octet-stream",
                                      ["mlm:weights"])}
    for key, f in files.items():
        kind = key.rsplit("-", 1)[-1]  # a composite's parts: "detector-config"
        if kind in documents:
            title, media, roles = documents[kind]
            assets[key] = _asset(f, f.relative_to(folder).as_posix(), title, media, roles)
    source = pretrained_source(context.hyperparameters)
    tasks = sorted({t for o in outputs for t in o["tasks"]} | {task_of(card).stac_task})
    hyper = {k: v for k, v in context.hyperparameters.items() if v is not None} or {"family": card.family}
    props = {
        "title": f"{release.label}: {card.architecture} {card.task}",
        "description": f"wildtrain {card.family} ({card.framework}, {card.architecture}) for "
                       f"{', '.join(card.class_names)} in aerial survey imagery.",
        "datetime": release.created,
        "mlm:name": mlm_name(release.model_name), "mlm:architecture": card.architecture, "mlm:tasks": tasks,
        "mlm:framework": "PyTorch", "mlm:framework_version": _version("torch"),
        "mlm:pretrained": source is not None, "mlm:pretrained_source": source,
        "mlm:accelerator": "amd64", "mlm:accelerator_constrained": False,
        "mlm:accelerator_summary": "x86-64 CPU (onnxruntime, OpenVINO, PyTorch); CUDA GPUs when available",
        "mlm:batch_size_suggestion": int(context.predict.get("batch", 16)),
        "mlm:input": inputs, "mlm:output": outputs, "mlm:hyperparameters": hyper,
        "bands": [{"name": b, "description": f"{b} channel of 8-bit RGB imagery"} for b in BANDS],
        "wildtrain:family": card.family, "wildtrain:framework": card.framework,
        "wildtrain:model_version": release.version, "wildtrain:aliases": list(release.aliases),
        "wildtrain:mlflow_run_id": release.run_id, "wildtrain:git_commit": release.git_commit,
        "wildtrain:dataset_hash": release.dataset_hash, "wildtrain:data_source": release.data_source,
        "wildtrain:data_source_md5": release.data_source_md5,
        "wildtrain:weights_sha256": card.hashes.get("weights_sha256", card.hashes),
        "wildtrain:parity": parity,
        "wildtrain:unavailable": {**unavailable(exported), **({"dlpk": dlpk_reason} if dlpk_reason else {})},
    }
    if exported.total_parameters is not None:
        props["mlm:total_parameters"] = int(exported.total_parameters)
    if context.metrics:
        props["wildtrain:metrics"] = {k: v for k, v in context.metrics.items()
                                      if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {"type": "Feature", "stac_version": STAC_VERSION, "stac_extensions": [mlm_schema(), FILE_EXTENSION],
            "id": release.item_id, "geometry": None, "properties": props, "links": _links(release),
            "assets": assets}


def unavailable(exported: Exported, prefix: str = "") -> dict[str, str]:
    out = {f"{prefix}{k}": v for k, v in exported.unavailable.items()}
    for role, part in exported.parts.items():
        out.update(unavailable(part, f"{role}-"))
    return out


def mlm_schema() -> str:
    from stac_model.schema import SCHEMA_URI

    return SCHEMA_URI


def validate(stac: dict) -> None:
    """stac-model's pydantic validation of the MLM fields (item properties, and runtime fields on assets), pystac's
    parse of the item, and the MLM rules those leave out; the first problem as one line."""
    import pydantic
    import pystac
    from stac_model.runtime import Runtime
    from stac_model.schema import MLModelProperties

    where = f"STAC item {stac.get('id', '?')}"

    def fail(msg: str) -> None:
        raise WildtrainError(f"{where}: {msg}")

    def one_line(e: pydantic.ValidationError) -> str:
        err = e.errors()[0]
        return f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}"

    props = stac.get("properties", {})
    try:
        MLModelProperties.model_validate(props)
    except pydantic.ValidationError as e:
        fail(f"invalid MLM properties ({one_line(e)})")
    for key, asset in stac.get("assets", {}).items():
        runtime = {k.removeprefix("mlm:"): v for k, v in asset.items() if k.startswith("mlm:")
                   and k.removeprefix("mlm:") in Runtime.model_fields}
        try:
            Runtime.model_validate(runtime)
        except pydantic.ValidationError as e:
            fail(f"asset '{key}': invalid MLM runtime fields ({one_line(e)})")
    if stac.get("type") != "Feature" or not str(stac.get("stac_version", "")).startswith("1."):
        fail("not a STAC 1.x Feature")
    if mlm_schema() not in stac.get("stac_extensions", []):
        fail(f"stac_extensions lacks {mlm_schema()}")
    if not NAME.match(str(props.get("mlm:name", ""))):
        fail(f"mlm:name '{props.get('mlm:name')}' must match {NAME.pattern}")
    versions = [props.get("mlm:framework_version")] + [a.get("mlm:framework_version") for a in
                                                       stac.get("assets", {}).values()]
    bad = [v for v in versions if v is not None and not SEMVER.match(str(v))]
    if bad:
        fail(f"mlm:framework_version '{bad[0]}' is not a semantic version")
    models = [k for k, a in stac.get("assets", {}).items() if "mlm:model" in a.get("roles", [])]
    if not models:
        fail("no asset has the role mlm:model")
    untyped = [k for k in models if not stac["assets"][k].get("mlm:artifact_type")]
    if untyped:
        fail(f"model asset '{untyped[0]}' lacks mlm:artifact_type")
    if any(i.get("bands") for i in props.get("mlm:input", [])) and not props.get("bands"):
        fail("mlm:input names bands but the item has no 'bands' (STAC 1.1) describing them")
    if props.get("mlm:pretrained") is False and props.get("mlm:pretrained_source", "absent") is not None:
        fail("mlm:pretrained is false: mlm:pretrained_source must be null (trained from scratch)")
    if "datetime" not in props:
        fail("properties lack datetime")
    try:
        pystac.Item.from_dict(stac, preserve_dict=True)
    except Exception as e:  # pystac's own parse errors are of many kinds
        fail(f"pystac cannot read it ({' '.join(str(e).split())[:200]})")
