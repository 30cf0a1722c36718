"""The same commit, params and data give bit-identical weights: on a rerun, and in a clone in another folder.

What used to differ between two machines of the same kind was the CPU: PyTorch, oneDNN and MKL pick kernels by
instruction set (AVX2, AVX-512, AMX) and each rounds differently. wildtrain pins them (wildtrain.env; the modes:
tests/test_cpu_kernels.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO


def card(folder) -> dict:
    return json.loads((folder / "model.json").read_text())


def test_cpu_kernels_are_pinned_before_any_tensor_op():
    code = ("from wildtrain import env; env.configure(); import torch, os; torch.ones(3).sum(); "
            "print(torch.backends.cpu.get_cpu_capability(), os.environ['ONEDNN_MAX_CPU_ISA'], os.environ['MKL_CBWR'], "
            "env.reproducibility('cpu')['repro.cpu_kernels'])")
    clean = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR")}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, "PYTHONPATH": str(REPO / "src")},
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    if "avx2" not in open("/proc/cpuinfo").read():
        pytest.skip("this CPU has no AVX2: nothing to pin")
    assert out.stdout.split() == ["AVX2", "AVX2", "COMPATIBLE", "avx2"]
    native = subprocess.run([sys.executable, "-c", code], env={**clean, "PYTHONPATH": str(REPO / "src"),
                                                              "WILDTRAIN_CPU_KERNELS": "native"},
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert native.returncode != 0 or native.stdout.split()[-1] == "native"  # unpinned: ONEDNN var absent


@pytest.mark.slow
def test_retraining_gives_bit_identical_weights(pipeline_repo, tmp_path):
    """Both models trained again, in a clone in another folder, with DVC's run-cache bypassed (-f)."""
    ws = pipeline_repo.clone(tmp_path / "elsewhere")
    first = {d: card(pipeline_repo.path / d) for d in ("models", "models_classifier")}
    out = ws.sh("dvc", "repro", "-f", "-s", "train", "train_classifier").stdout  # one DVC start-up for both
    assert out.count("Running stage") == 2
    for d, before in first.items():
        after = card(ws.path / d)
        assert after["training"]["mlflow_run_id"] != before["training"]["mlflow_run_id"]  # it really trained again
        assert after["hashes"]["tensors_sha256"] == before["hashes"]["tensors_sha256"], d
        assert after["hashes"]["weights_sha256"] == before["hashes"]["weights_sha256"], d  # the files too
    # evaluation of the retrained models (the cards name new runs) gives the same metrics (registering them again
    # is not what is checked here: `-s`, the evaluations only)
    ws.sh("dvc", "repro", "-s", "evaluate", "evaluate_classifier", "evaluate_two_stage")
    for name in ("eval.json", "eval_classifier.json", "eval_two_stage.json"):
        assert (ws.path / "metrics" / name).read_text() == (pipeline_repo.path / "metrics" / name).read_text(), name
