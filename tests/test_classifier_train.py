"""The classifier for real: Lightning training, torchmetrics, MLflow run + registry, export parity,
resume after SIGKILL, DDP on CPU through the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from classifier_data import SMALL, tiny_params, write_crops
from conftest import REPO, pipeline_env
from wildtrain.evaluate.classification import classification_metrics


def test_metrics_on_a_known_case():
    probs = np.eye(3)[[0, 0, 1, 2, 2, 1]]  # predictions 0 0 1 2 2 1
    m = classification_metrics(probs, [0, 1, 1, 2, 2, 2], ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    # per class: a P=1/2 R=1 F1=2/3; b P=1/2 R=1/2 F1=1/2; c P=1 R=2/3 F1=4/5
    assert [m["per_class"][c]["f1"] for c in "abc"] == pytest.approx([2 / 3, 1 / 2, 4 / 5])
    assert m["f1_macro"] == pytest.approx((2 / 3 + 1 / 2 + 4 / 5) / 3)
    assert m["precision_macro"] == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)
    assert m["recall_macro"] == pytest.approx((1 + 1 / 2 + 2 / 3) / 3)
    assert m["confusion"] == [[1, 0, 0], [1, 1, 0], [0, 1, 2]]


def _env(root: Path) -> dict:
    env = pipeline_env(REPO)
    env["YOLO_CONFIG_DIR"] = str(root / ".ultralytics")
    return env


def crop_batch(files: list[Path], imgsz: int) -> torch.Tensor:
    """Crops preprocessed as the classifier's Predictor does (what exports are checked on)."""
    from wildtrain.data.images import load_rgb
    from wildtrain.families.classifier.data import transforms

    t = transforms(imgsz)
    return torch.stack([t(image=load_rgb(f))["image"] for f in files])


@pytest.mark.slow
def test_train_evaluate_register_tracks_and_registers(tmp_path, monkeypatch):
    import mlflow
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from wildtrain import params
    from wildtrain.pipeline.evaluate import evaluate
    from wildtrain.pipeline.register import register
    from wildtrain.pipeline.train import train

    write_crops(tmp_path, SMALL)
    p = params.load(tiny_params(tmp_path, imbalance="sampler"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)  # MLflow's sqlite store puts artifacts in ./mlruns
    card = train(p, tmp_path, "classifier")
    assert card["training"]["epochs_completed"] == 2 and card["class_names"] == ["antelope", "bird", "zebra"]
    assert card["family"] == "classifier" and card["architecture"] == "mobilenet_v3_small"
    state = torch.load(tmp_path / "models_classifier/model.pt", weights_only=True)
    assert state["classifier.3.weight"].shape == (3, 1024)  # mobilenet_v3_small head for our 3 classes
    live = json.loads((tmp_path / "metrics/train_classifier/metrics.json").read_text())
    assert live["step"] == 1 and {"loss", "f1_macro", "accuracy"} <= set(live["val"])

    ev = evaluate(p, tmp_path, "classifier")
    assert ev["crops"] == 12 and 0 <= ev["f1_macro"] <= 1 and set(ev["per_class"]) == set(card["class_names"])
    assert np.asarray(ev["confusion"]).sum() == 12 and len(ev["evaluation_hash"]) == 64
    assert len(json.loads((tmp_path / "metrics/plots/classifier_confusion.json").read_text())) == 12
    assert ev["explained"] == 8 and ev["explained_misclassified"] == min(4, ev["misclassified"])
    assert (tmp_path / "metrics/plots/classifier_explanations.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    reg = register(p, tmp_path, "classifier")
    assert reg["version"] == 1 and reg["aliases"] == ["challenger", "champion"]
    assert reg["exports"] == ["onnx", "openvino", "torchscript"]

    client = MlflowClient()
    run_id = card["training"]["mlflow_run_id"]
    run = client.get_run(run_id)
    assert "system.torch" in run.data.params and run.data.params["classifier.imbalance"] == "sampler"
    assert [m.step for m in client.get_metric_history(run_id, "val/f1_macro")] == [0, 1]
    assert "eval/f1_macro" in run.data.metrics and run.data.tags["model_sha256"] == card["hashes"]["weights_sha256"]
    assert run.data.tags["repro.cpu_kernels"] in ("avx2", "native")
    logged = {a.path for a in client.list_artifacts(run_id, "artifacts")}
    assert {"artifacts/classifier_misclassified.png", "artifacts/classifier_explanations.png"} <= logged
    published = {a.path for a in client.list_artifacts(run_id, "publish/v1")}
    assert {"publish/v1/model.onnx", "publish/v1/model.torchscript.pt", "publish/v1/stac-item.json",
            "publish/v1/wildtrain-classifier.dlpk", "publish/v1/MODEL_CARD.md"} <= published

    champion = mlflow.pyfunc.load_model("models:/wildtrain-classifier@champion")
    assert champion.metadata.signature is not None
    files = sorted((tmp_path / "data/crops/test/zebra").glob("*.png"))[:2]
    rows = champion.predict(pd.DataFrame({"image": [f.read_bytes() for f in files]}))
    assert [r["label"] for r in rows] and all(abs(sum(r["scores"].values()) - 1) < 1e-4 for r in rows)

    # Registering the same model again is a tie (gain 0 [0, 0] on the paired bootstrap): it stays challenger, the
    # detector's alias gate, shared; the champion's table came from its version (no re-evaluation).
    low, high = ev["f1_macro_ci95"]
    assert low <= ev["f1_macro"] <= high and ev["bootstrap"]["unit"] == "crop"  # these crops name no source image
    reg2 = register(p, tmp_path, "classifier")
    assert reg2["version"] == 2 and reg2["decision"] == "challenger" and reg2["aliases"] == ["challenger"]
    assert reg2["delta"] == 0.0 and reg2["delta_ci95"] == [0.0, 0.0] and "a tie" in reg2["reason"]
    assert reg2["champion_reevaluated"] is None and reg2["previous_champion_version"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["resnet18", "mobilenet_v3_small"])
def test_export_parity_onnxruntime_and_torchscript(tmp_path, backbone):
    from wildtrain.contract import Exported, ExportIO
    from wildtrain.families.classifier.backbones import build
    from wildtrain.families.classifier.data import MEAN, STD
    from wildtrain.families.torch_export import export
    from wildtrain.publish.parity import check

    crops = write_crops(tmp_path, {"test": {"antelope": 3, "bird": 3}})
    torch.manual_seed(0)
    model = build(backbone, 4).eval()
    batch = crop_batch(sorted((crops / "test").rglob("*.png")), 64)
    with torch.no_grad():
        logits = model(batch).numpy()
    io = ExportIO(size=64, resize="stretch", mean=MEAN, std=STD, output="logits", output_dims=("batch", "class"),
                  output_shape=(-1, 4), classes=("a", "b", "c", "d"), input_name="images", output_name="logits")
    files = export(model, 64, tmp_path / "export")
    report = check(Exported(files=files, io=io, reference=(batch.numpy(), logits)), {})
    assert max(report["onnx"]["max_abs_diff"], report["torchscript"]["max_abs_diff"]) <= 1e-4, report
    one = check(Exported(files=files, io=io, reference=(batch.numpy()[:1], logits[:1])), {})
    assert one["onnx"]["max_abs_diff"] <= 1e-4  # dynamic batch dimension


def _train_proc(root: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], cwd=root, env=_env(root), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_resume_after_sigkill_mid_epoch(tmp_path):
    many = {"train": {"antelope": 16, "bird": 16, "zebra": 16}, "val": {"antelope": 3, "bird": 3, "zebra": 3}}
    write_crops(tmp_path, many)
    tiny_params(tmp_path, epochs=3, batch=4)  # 12 steps per epoch
    stage = [str(REPO / "stages/train.py"), "classifier"]
    proc = _train_proc(tmp_path, *stage)
    last, live = tmp_path / "runs/classifier/last.ckpt", tmp_path / "metrics/train_classifier/metrics.json"
    deadline = time.time() + 240
    # Epoch 0 is checkpointed and logged: the process is now training epoch 1.
    while not (last.exists() and live.exists()) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert last.exists() and live.exists(), proc.communicate()[0][-3000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert json.loads(live.read_text())["step"] == 0  # one epoch done, the second cut short
    run_before = json.loads((tmp_path / "runs/classifier/wildtrain_state.json").read_text())
    assert not run_before["complete"] and not (tmp_path / "models_classifier").exists()

    rerun = _train_proc(tmp_path, *stage)
    out = rerun.communicate(timeout=300)[0]
    assert rerun.returncode == 0, out[-3000:]
    card = json.loads((tmp_path / "models_classifier/model.json").read_text())
    assert card["extra"]["resumed_after_epochs"] == 1 and card["training"]["epochs_completed"] == 3, card
    assert "3 epochs (resumed)" in out
    info = card["training"]
    assert info["mlflow_run_id"] == run_before["run_id"]  # the same MLflow run continues
    assert json.loads(live.read_text())["step"] == 2

    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    steps = [m.step for m in MlflowClient().get_metric_history(info["mlflow_run_id"], "val/f1_macro")]
    assert steps == [0, 1, 2]  # the cut-short epoch was redone, nothing logged twice


@pytest.mark.slow
def test_ddp_two_cpu_processes_through_the_cli(tmp_path):
    write_crops(tmp_path, SMALL)
    tiny_params(tmp_path, epochs=1, devices=2, strategy="ddp")
    proc = _train_proc(tmp_path, "-m", "wildtrain.cli", "train", "classifier")
    out = proc.communicate(timeout=400)[0]
    assert proc.returncode == 0, out[-4000:]
    assert "MEMBER: 1/2" in out and "MEMBER: 2/2" in out  # two processes joined the gloo group
    card = json.loads((tmp_path / "models_classifier/model.json").read_text())
    assert card["training"]["epochs_completed"] == 1
    assert out.count("train: classifier mobilenet_v3_small, 1 epochs") == 1  # only rank 0 writes outputs and tracks


def _node_env(root: Path, launcher: str, node: int, port: int, shards: Path) -> dict:
    """The environment of node `node` of 2 (one process each) on loopback: torchrun sets RANK/WORLD_SIZE itself;
    under SLURM, srun would set these."""
    env = {**_env(root), "SHARD_LOG": str(shards), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(Path(__file__).parent)])}
    if launcher == "slurm":
        env.update(SLURM_NTASKS="2", SLURM_NNODES="2", SLURM_NTASKS_PER_NODE="1", SLURM_PROCID=str(node),
                   SLURM_LOCALID="0", SLURM_NODEID=str(node), SLURM_JOB_NAME="wildtrain", SLURM_JOB_ID="4242",
                   SLURM_NODELIST="127.0.0.1")
    return env


@pytest.mark.slow
@pytest.mark.parametrize("launcher", os.environ.get("WILDTRAIN_TEST_LAUNCHERS", "torchrun").split(","))
def test_two_nodes_one_process_each_on_loopback(tmp_path, launcher):
    """2 nodes x 1 process (gloo on loopback), each node in its own folder with its own copy of the data, as on two
    machines: one DDP group, global rank 0 alone tracks and writes outputs, the ranks' training shards are disjoint.
    CI runs it under torchrun; WILDTRAIN_TEST_LAUNCHERS=torchrun,slurm also under SLURM's variables (~45 s more)."""
    from conftest import free_port

    nodes, shards, port = [tmp_path / "node0", tmp_path / "node1"], tmp_path / "shards", free_port()
    shards.mkdir()
    for node in nodes:
        write_crops(node, SMALL)
        tiny_params(node, epochs=1, num_nodes=2, devices=1)
    script = [str(Path(__file__).with_name("ddp_shards.py")), "train", "classifier"]
    procs = []
    for i, node in enumerate(nodes):
        if launcher == "torchrun":
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                   "--node-rank", str(i), "--master-addr", "127.0.0.1", "--master-port", str(port), *script]
        else:
            cmd = [sys.executable, *script]
        procs.append(subprocess.Popen(cmd, cwd=node, env=_node_env(node, launcher, i, port, shards),
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=400)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[-3000:] for o in outs]
    assert "MEMBER: 1/2" in outs[0] + outs[1] and "MEMBER: 2/2" in outs[0] + outs[1]

    # rank 0 (node 0) tracked and wrote; rank 1 (node 1) wrote nothing: no model, no metrics, no MLflow store
    card = json.loads((nodes[0] / "models_classifier/model.json").read_text())
    assert card["training"]["epochs_completed"] == 1 and (nodes[0] / "mlflow.db").is_file()
    assert (nodes[0] / "metrics/train_classifier/metrics.json").is_file()
    assert "train: classifier" in outs[0] and "train: classifier" not in outs[1]
    for path in ("models_classifier", "metrics", "mlflow.db", "mlruns"):
        assert not (nodes[1] / path).exists(), path

    # the training sampler's first epoch: each rank half of the 36 crops, together all of them, none twice
    first = [json.loads((shards / f"rank{r}.json").read_text())[0] for r in (0, 1)]
    assert all(f["dataset"] == 36 and f["shuffle"] for f in first)
    a, b = set(first[0]["indices"]), set(first[1]["indices"])
    assert len(a) == len(b) == 18 and not a & b and a | b == set(range(36))
