"""Publishing a trained model where users look for it: TorchScript, ONNX and OpenVINO IR exports checked against PyTorch
(parity.py), a STAC-MLM item (stac.py), an Esri deep-learning package (dlpk.py) and a model card (card.py).

One folder per model (register writes `publish/<family>/`, DVC-tracked, and logs it to the registered version's
MLflow run as `publish/v<N>/`; `wildtrain export` writes it for any version):

    model.onnx, model.torchscript.pt   (a two-stage model: detector/..., classifier/...)
    model.xml + model.bin              OpenVINO IR, converted from the ONNX export (openvino.py)
    <model name>.dlpk                  ONNX + .emd + WildtrainInference.py (when ONNX exists)
    MODEL_CARD.md, parity.json, stac-item.json (its assets are the files beside it)

In two steps, so nothing is registered that would not publish: `stage` exports, checks parity (one line and no
registration when an export fails) and builds every document once as a draft; `finish`, once the version is
known, writes the folder for real.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wildtrain.contract import Exported, ModelCard
from wildtrain.io import link_or_copy, replaced_dir, write_json, write_text
from wildtrain.publish import card as card_md
from wildtrain.publish import dlpk, openvino, parity, stac
from wildtrain.publish.release import Context, Release

STAC_ITEM, MODEL_CARD_MD, PARITY_REPORT = "stac-item.json", "MODEL_CARD.md", "parity.json"
EXPORT_NAMES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt", openvino.FORMAT: openvino.XML_FILE,
                openvino.WEIGHTS: openvino.BIN_FILE}
FORMATS = ("stac", "dlpk", "onnx", "torchscript", "openvino", "card")  # what `wildtrain export --to` writes


@dataclass(frozen=True)
class Staged:
    """Exports that passed parity, with what the documents are built from."""

    model_dir: Path
    card: ModelCard
    exported: Exported
    parity: dict
    context: Context


def stage(family, model_dir: Path, work: Path, p, root: Path, context: Context, release: Release,
          export: bool = True) -> Staged:
    """Export (unless `export` is false) and check every export against PyTorch; then build the documents into a
    draft folder (all but the zip of the .dlpk), so a problem with any of them stops before the model is
    registered."""
    card = ModelCard.load(model_dir)
    if export:
        exported = openvino.add(family.export(model_dir, work / "export", p, root), work / "export")
    else:
        off = {fmt: "not exported (register export: false)" for fmt in ("onnx", "torchscript", openvino.FORMAT)}
        exported = Exported(unavailable=off)
    report = parity.check(exported, context.parity_nms)
    staged = Staged(model_dir, card, exported, report, context)
    finish(staged, work / "draft", release, package=False)
    return staged


def _copy_exports(exported: Exported, folder: Path, prefix: str = "") -> dict[str, Path]:
    """Exports into the folder under stable names; asset key -> file."""
    files = {}
    if exported.parts:
        for role, part in exported.parts.items():
            files.update(_copy_exports(part, folder / role, f"{role}-"))
        return files
    for fmt, src in exported.files.items():
        dst = folder / EXPORT_NAMES.get(fmt, src.name)
        link_or_copy(src, dst)
        files[f"{prefix}{fmt}" if fmt in EXPORT_NAMES else f"{prefix}config"] = dst
    return files


def finish(staged: Staged, out: Path, release: Release, package: bool = True) -> dict[str, Path]:
    """Write the publication folder (replaced whole, atomically): exports, parity report, model card, .dlpk (its
    .emd only unless `package`) and the validated STAC item naming them. Returns asset key -> file."""
    card, exported, context = staged.card, staged.exported, staged.context
    with replaced_dir(out) as tmp:
        files = _copy_exports(exported, tmp)
        write_json(tmp / PARITY_REPORT, staged.parity)
        files["parity"] = tmp / PARITY_REPORT
        reason = dlpk.why_not(exported)
        write_text(tmp / MODEL_CARD_MD, card_md.render(card, exported, staged.parity, release, context, reason))
        files["card"] = tmp / MODEL_CARD_MD
        if reason is None:
            definition = dlpk.emd(card, exported, release, context, staged.model_dir)
            if package:
                files["dlpk"] = dlpk.write(tmp / f"{release.model_name}.dlpk", definition, exported,
                                           {MODEL_CARD_MD: files["card"]})
        item = stac.item(card, exported, staged.parity, release, context, files, tmp, reason)
        stac.validate(item)
        write_json(tmp / STAC_ITEM, item)
    return {key: out / f.relative_to(tmp) for key, f in {**files, "stac": tmp / STAC_ITEM}.items()}


def select(folder: Path, to: str) -> list[Path]:
    """The files of a publication folder that `wildtrain export --to FORMAT` writes (stac: the item and every file
    it names, which is the whole folder)."""
    files = sorted(f for f in folder.rglob("*") if f.is_file())
    if to == "stac":
        return files
    if to == "dlpk":
        return [f for f in files if f.suffix == ".dlpk"]
    if to == "card":
        return [f for f in files if f.name == MODEL_CARD_MD]
    if to == openvino.FORMAT:  # the IR is two files
        return [f for f in files if f.name in (openvino.XML_FILE, openvino.BIN_FILE)]
    return [f for f in files if f.name == EXPORT_NAMES[to]]

