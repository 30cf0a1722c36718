"""What `register` publishes for every family, on the session's one tiny `dvc repro` (tests/pipeline_fixture.py):
the STAC-MLM items validate and name their files, runs and data; the exports passed parity; the model cards print
the numbers in metrics/; the .dlpk packages run outside ArcGIS (a stand-in passes what ArcGIS would) and find what
wildtrain finds; `wildtrain export` writes any version's publication; and an export that fails parity is refused
before anything is registered. MMDetection (no exports without mmdeploy) is covered in test_mmdet.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from publish_helpers import ArcGIS, box_of, iou, markdown_table, unpack
from wildtrain.errors import WildtrainError
from wildtrain.publish import stac

pytestmark = pytest.mark.slow
SUFFIX = {"detector": "", "classifier": "_classifier", "two_stage": "_two_stage"}
TASK = {"detector": "object-detection", "classifier": "classification", "two_stage": "object-detection"}


def cell(value) -> str:
    """How the model card prints a recorded number."""
    return f"{round(value, 4):.4f}" if isinstance(value, float) else str(value)


def test_register_publishes_every_family(pipeline_repo):
    from mlflow.tracking import MlflowClient

    repo = pipeline_repo.path
    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    # each register stage says what it published, in one line; Ultralytics' exporter does not chat about temp files
    assert all(f"publish: publish/{family}/ (" in pipeline_repo.repro for family in SUFFIX)
    assert "Export complete" not in pipeline_repo.repro and "yolo predict task=detect" not in pipeline_repo.repro
    for family, suffix in SUFFIX.items():
        folder = repo / "publish" / family
        reg = json.loads((repo / f"metrics/register{suffix}.json").read_text())
        item = json.loads((folder / "stac-item.json").read_text())
        stac.validate(item)
        props = item["properties"]
        assert item["id"] == f"{reg['model_name']}-v{reg['version']}" and props["mlm:name"] == reg["model_name"]
        assert TASK[family] in props["mlm:tasks"] and props["wildtrain:model_version"] == reg["version"]
        for key, asset in item["assets"].items():  # every file the item names is there, as described
            if asset["href"].startswith("models:/"):
                assert asset["href"] == reg["model_uri"], key
                continue
            f = folder / asset["href"]
            assert f.stat().st_size == asset["file:size"] and asset["file:checksum"] == stac.checksum(f), key
        links = {link["rel"]: link["href"] for link in item["links"]}
        card = json.loads(((repo / "models" if family != "classifier" else repo / "models_classifier") /
                           "model.json").read_text())
        assert links["mlflow-run"] == f"runs:/{reg['run_id']}" and links["mlflow-model-version"] == reg["model_uri"]
        assert card["training"]["git_commit"] in links["git-commit"]
        assert links["dataset"].endswith(card["training"]["dataset_hash"])

        report = json.loads((folder / "parity.json").read_text())
        checked = [report] if family != "two_stage" else [report["detector"], report["classifier"]]
        for part in checked:
            assert part["images"] > 0
            for fmt in ("onnx", "torchscript", "openvino"):
                assert part[fmt]["max_abs_diff"] <= 1e-4
                assert part[fmt].get("matched", 0) == part[fmt].get("boxes", 0)
        onnx = ["model.onnx"] if family != "two_stage" else ["detector/model.onnx", "classifier/model.onnx"]
        assert all((folder / f).is_file() for f in onnx) and (folder / f"{reg['model_name']}.dlpk").is_file()
        assert sorted(reg["exports"]) == sorted(k for k in item["assets"] if k.endswith(("onnx", "torchscript", "openvino")))
        assert all(item["assets"][k]["mlm:artifact_type"] == "openvino" for k in reg["exports"] if k.endswith("openvino"))

        logged = {a.path.rsplit("/", 1)[-1] for a in client.list_artifacts(reg["run_id"], f"publish/v{reg['version']}")}
        assert {f.name for f in folder.iterdir()} <= logged, family  # also artifacts of the registered version


def test_model_cards_print_the_numbers_in_metrics(pipeline_repo):
    repo = pipeline_repo.path
    data = json.loads((repo / "metrics/data.json").read_text())
    params = __import__("yaml").safe_load((repo / "params.yaml").read_text())
    for family, suffix in SUFFIX.items():
        text = (repo / "publish" / family / "MODEL_CARD.md").read_text()
        ev = json.loads((repo / f"metrics/eval{suffix}.json").read_text())
        overall = markdown_table(text, "## Evaluation", "metric")
        numbers = {k: v for k, v in ev.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                   and not k.endswith(("_ci95_low", "_ci95_high"))}
        assert numbers and {k: row["value"] for k, row in overall.items()} == {k: cell(v) for k, v in numbers.items()}
        headline = {"": "map50", "_two_stage": "map50", "_classifier": "f1_macro", "_segmenter": "miou"}[suffix]
        low, high = ev[f"{headline}_ci95"]
        assert low <= ev[headline] <= high and ev[f"{headline}_ci95_low"] == low  # scalars for `dvc exp show`
        assert overall[headline]["95% interval"] == f"[{cell(low)}, {cell(high)}]"
        assert all(row["95% interval"] == (f"[{cell(ev[k + '_ci95'][0])}, {cell(ev[k + '_ci95'][1])}]"
                                           if ev.get(k + "_ci95") else "—") for k, row in overall.items())
        per_class = markdown_table(text, "Per class:", "class")
        assert set(per_class) == set(ev["per_class"])
        for name, values in ev["per_class"].items():
            assert per_class[name] == {
                (f"{k[:-5]} 95% CI" if k.endswith("_ci95") else k):
                    ("—" if v is None else f"[{cell(v[0])}, {cell(v[1])}]" if isinstance(v, list) else cell(v))
                for k, v in values.items()}, (family, name)
        counts = markdown_table(text, "## Data", "split")
        unit = "crops" if family == "classifier" else "classes"
        for split in ("train", "val", "test"):
            row, expected = counts[split], data[split][unit]
            assert row["images"] == str(data[split]["images"])
            assert {c: row[c] for c in expected} == {c: str(n) for c, n in expected.items()}, (family, split)
        hyper = markdown_table(text, "Training parameters:", "param")
        section = "classifier" if family == "classifier" else "train"
        assert hyper[f"`{section}.epochs`"]["value"] == f"`{params[section]['epochs']}`"
        assert "Trained and evaluated on synthetic scenes" not in text  # the fixture's data is a user's COCO folder
        assert "## Intended use" in text and "## Known limits" in text


def lively_detector(repo: Path, dst: Path) -> Path:
    """A detector folder whose boxes, classes and scores differ from anchor to anchor (the fixture's 2-epoch model
    scores every anchor alike, so matching its boxes would prove little): the pipeline's model folder with a freshly
    initialised YOLO11n, its batch norms calibrated on the training images."""
    import torch

    from wildtrain.data.images import load_rgb
    from wildtrain.env import configure_ultralytics
    from wildtrain.io import write_torch

    configure_ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    shutil.copytree(repo / "models", dst)
    ckpt = torch.load(dst / "model.pt", map_location="cpu", weights_only=False)  # the fixture's own checkpoint
    torch.manual_seed(0)
    model = DetectionModel("yolo11n.yaml", nc=len(ckpt["model"].names), verbose=False)
    model.names, model.args = ckpt["model"].names, ckpt["model"].args
    images = sorted((repo / "data/raw/images").iterdir())[:8]
    x = torch.from_numpy(np.stack([load_rgb(f) for f in images])).permute(0, 3, 1, 2).float() / 255
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        model.train()(x)
    for seq in model.model[-1].cv3:
        seq[-1].bias.data.fill_(-3.0)
    ckpt["model"] = model.eval()
    write_torch(dst / "model.pt", ckpt)
    return dst


def species_only(src: Path, dst: Path) -> Path:
    """The pipeline's classifier, never answering `background` (the 2-epoch one calls every box background, which
    would leave a two-stage model nothing to find): the background logit's bias pushed down."""
    import torch

    from wildtrain.io import write_torch

    shutil.copytree(src, dst)
    names = json.loads((dst / "model.json").read_text())["class_names"]
    state = torch.load(dst / "model.pt", map_location="cpu", weights_only=True)
    last = [k for k, v in state.items() if k.endswith("bias") and v.shape == (len(names),)][-1]
    state[last][names.index("background")] = -30.0
    write_torch(dst / "model.pt", state)
    return dst


def test_dlpk_packages_find_what_wildtrain_finds(pipeline_repo, tmp_path):
    """Each .dlpk unpacked, its .emd checked, and its inference function run by the ArcGIS stand-in: the
    classifier's on the test crops, a detector's and a two-stage model's on test images, against wildtrain's own
    predictions (same labels and boxes at IoU >= 0.99, scores within 1e-4)."""
    from wildtrain import families, params, publish
    from wildtrain.data.images import load_rgb
    from wildtrain.contract import ModelCard
    from wildtrain.families.two_stage import compose
    from wildtrain.publish.dlpk import VALID_MODEL_TYPES
    from wildtrain.publish import Staged
    from wildtrain.publish.release import Context, release

    repo = pipeline_repo.path
    emd, emd_file, function = unpack(repo / "publish/classifier/wildtrain-classifier.dlpk", tmp_path / "cls")
    card = ModelCard.load(repo / "models_classifier")
    assert {"Framework", "ModelConfiguration", "ModelFile", "ModelType", "ImageHeight", "ImageWidth",
            "ExtractBands", "Classes", "InferenceFunction"} <= set(emd)
    assert emd["ModelType"] in VALID_MODEL_TYPES and (emd_file.parent / emd["ModelFile"]).is_file()
    assert emd["ImageHeight"] == emd["ImageWidth"] == card.input["size"] and emd["ExtractBands"] == [0, 1, 2]
    assert [(k["Value"], k["Name"]) for k in emd["Classes"]] == list(enumerate(card.class_names, 1))
    crops = sorted((repo / "data/crops/test").rglob("*.png"))[:6]
    chips = [load_rgb(f) for f in crops]
    features = ArcGIS(function, emd_file).classify(chips)
    expected = families.load(repo / "models_classifier", "cpu").predict(chips)
    assert [f["attributes"]["Label"] for f in features] == [card.class_names[c.label] for c in expected]
    assert [f["attributes"]["Confidence"] for f in features] == pytest.approx([max(c.scores) for c in expected],
                                                                            abs=1e-4)

    p = params.load(repo / "params.yaml")
    detector = lively_detector(repo, tmp_path / "detector")
    two_stage = compose(detector, species_only(repo / "models_classifier", tmp_path / "classifier"),
                        tmp_path / "two_stage")
    images = [load_rgb(repo / "data/raw/images" / im["file_name"]) for im in
              json.loads((repo / "data/coco/test.json").read_text())["images"][:3]]
    context = Context(predict={"conf": 0.25, "iou": 0.7, "max_det": 300, "batch": 16})
    card = ModelCard.load(two_stage)
    rel = release(card, "wildtrain-two-stage", None)
    staged = publish.stage(families.get("two_stage"), two_stage, tmp_path / "work", p, repo, context, rel)
    # the detector alone: its part of the two-stage export (already checked), published as the detector family
    alone = Staged(detector, ModelCard.load(detector), staged.exported.parts["detector"], staged.parity["detector"],
                   context)
    for name, folder, stage in (("detector", detector, alone), ("two_stage", two_stage, staged)):
        card = ModelCard.load(folder)
        rel = release(card, f"wildtrain-{name.replace('_', '-')}", None)
        files = publish.finish(stage, tmp_path / name / "publish", rel)
        emd, emd_file, function = unpack(files["dlpk"], tmp_path / name / "dlpk")
        assert emd["ModelType"] == "ObjectDetection" and emd["ImageHeight"] == card.input["size"]
        arcgis = ArcGIS(function, emd_file, threshold=0.25)
        assert {"raster", "model", "threshold"} <= {q["name"] for q in arcgis.params}
        predictor = families.load(folder, "cpu")
        found = 0
        for image in images:
            ours = predictor.predict([image], conf=0.25, iou=0.7, max_det=300)[0]
            theirs = arcgis.detect(image)
            assert len(theirs) == len(ours.boxes), name
            free = list(theirs)
            for (x, y, w, h), cls, score in zip(ours.boxes, ours.classes, ours.scores):
                match = max(free, key=lambda f: iou(box_of(f), [x, y, x + w, y + h]))
                assert iou(box_of(match), [x, y, x + w, y + h]) >= 0.99, name
                assert match["attributes"]["Class"] == card.class_names[cls], name
                assert match["attributes"]["Confidence"] == pytest.approx(score, abs=1e-4), name
                free.remove(match)
            found += len(theirs)
        assert found > 0, name


def test_export_writes_any_versions_publication(pipeline_repo, tmp_path, monkeypatch):
    """The registered publication comes back byte for byte (through the CLI); a version registered without one (its
    artifacts removed) is published from its model folder, with the metrics of its run; bad arguments are one
    line each."""
    from wildtrain import params
    from wildtrain.pipeline.export import export

    ws = pipeline_repo.clone(tmp_path / "repo")
    ws.sh("python", "-m", "wildtrain.cli", "export", "--out", str(tmp_path / "a"), "--model",
          "models:/wildtrain-two-stage@champion", "--to", "dlpk")
    registered = ws.path / "publish/two_stage/wildtrain-two-stage.dlpk"
    assert (tmp_path / "a/wildtrain-two-stage.dlpk").read_bytes() == registered.read_bytes()
    bad = ws.sh("python", "-m", "wildtrain.cli", "export", "-o", str(tmp_path / "d"), "--model",
                "models:/wildtrain-classifier@champion", "--to", "pdf", check=False)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].endswith(
        "'pdf' is not one of 'stac', 'dlpk', 'onnx', 'torchscript', 'openvino', 'card'. (see wildtrain export --help)")
    assert ws.network_log() == ""

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the clone's own store
    monkeypatch.chdir(ws.path)
    p = params.load(ws.path / "params.yaml")
    written = export(p, ws.path, "models:/wildtrain-two-stage/1", "onnx", str(tmp_path / "b"))
    assert sorted(str(f.relative_to(tmp_path / "b")) for f in written) == \
        ["classifier/model.onnx", "detector/model.onnx"]
    written = export(p, ws.path, "models:/wildtrain-detector@champion", "openvino", str(tmp_path / "ov"))
    assert sorted(f.name for f in written) == ["model.bin", "model.xml"]  # the IR as registered, both files
    assert (tmp_path / "ov/model.xml").read_bytes() == (ws.path / "publish/detector/model.xml").read_bytes()

    reg = json.loads((ws.path / "metrics/register_classifier.json").read_text())
    shutil.rmtree(next(ws.path.glob(f"mlruns/*/{reg['run_id']}/artifacts/publish")))  # as before publishing existed
    export(p, ws.path, "models:/wildtrain-classifier@champion", "stac", str(tmp_path / "c"))
    item = json.loads((tmp_path / "c/stac-item.json").read_text())
    stac.validate(item)
    assert item["id"] == "wildtrain-classifier-v1" and (tmp_path / "c/wildtrain-classifier.dlpk").is_file()
    assert item["properties"]["wildtrain:parity"]["onnx"]["max_abs_diff"] <= 1e-4
    ev = json.loads((ws.path / "metrics/eval_classifier.json").read_text())
    card = (tmp_path / "c/MODEL_CARD.md").read_text()
    assert markdown_table(card, "## Evaluation", "metric")["f1_macro"]["value"] == cell(ev["f1_macro"])
    with pytest.raises(WildtrainError, match=r"^--model models:/wildtrain-nothing@champion: "):
        export(p, ws.path, "models:/wildtrain-nothing@champion", "dlpk", str(tmp_path / "d"))
    with pytest.raises(WildtrainError, match="^--model: 'nowhere' is neither a model folder"):
        export(p, ws.path, "nowhere", "dlpk", str(tmp_path / "d"))


def test_registration_refuses_an_export_that_fails_parity(pipeline_repo, tmp_path, monkeypatch):
    """An ONNX export that differs from PyTorch (a broken exporter: here the output bias shifted) stops the stage
    with one line, before anything is registered or published."""
    import onnx
    from mlflow.tracking import MlflowClient
    from onnx import numpy_helper

    from wildtrain import params
    from wildtrain.families import torch_export
    from wildtrain.pipeline.register import register

    ws = pipeline_repo.clone(tmp_path / "repo")
    real = torch_export.export

    def broken(model, imgsz, out_dir, spatial=False):  # the output layer's bias off by 0.01 in the ONNX file, PyTorch untouched
        files = real(model, imgsz, out_dir, spatial)
        graph = onnx.load(str(files["onnx"]))
        classes = len(json.loads((ws.path / "models_classifier/model.json").read_text())["class_names"])
        bias = [w for w in graph.graph.initializer if list(w.dims) == [classes]][-1]
        bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + 0.01, bias.name))
        onnx.save(graph, str(files["onnx"]))
        return files

    monkeypatch.setattr(torch_export, "export", broken)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{ws.path / 'mlflow.db'}")
    monkeypatch.chdir(ws.path)
    before = (ws.path / "publish/classifier/stac-item.json").read_bytes()
    with pytest.raises(WildtrainError) as e:
        register(params.load(ws.path / "params.yaml"), ws.path, "classifier")
    message = str(e.value)
    assert message.startswith("model.onnx: onnx export differs from the PyTorch model on ") and \
        "max |logit difference|" in message and message.endswith("; not registered") and "\n" not in message
    versions = MlflowClient().search_model_versions("name='wildtrain-classifier'")
    assert [int(v.version) for v in versions] == [1], [v.version for v in versions]
    assert (ws.path / "publish/classifier/stac-item.json").read_bytes() == before
