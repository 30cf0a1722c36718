"""CPU kernel modes (WILDTRAIN_CPU_KERNELS, wildtrain.env): each sets its switches before the first tensor op, a
user's own setting wins, an unknown mode is one error line, and a real training in the portable mode gives the same
weights run to run. Each case runs in its own process: the libraries read their switches once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, pipeline_env

KERNEL_VARS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR", "WILDTRAIN_CPU_KERNELS")
AVX2 = "avx2" in Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else False
needs_avx2 = pytest.mark.skipif(not AVX2, reason="this CPU has no AVX2: every mode is native")

# what a process sees after wildtrain is configured and a device is chosen (as every training and model load does)
PROBE = ("import json, os, torch; from pathlib import Path; from wildtrain import env; "
         "from wildtrain.devices import resolve_device; env.configure(Path.cwd()); resolve_device('cpu'); "
         "torch.ones(4, 4) @ torch.ones(4, 4); r = env.reproducibility('cpu'); "
         "print(json.dumps({'env': {k: os.environ.get(k) for k in ('ATEN_CPU_CAPABILITY', 'ONEDNN_MAX_CPU_ISA', "
         "'MKL_CBWR')}, 'mkldnn': torch.backends.mkldnn.enabled, 'nnpack': torch._C._get_nnpack_enabled(), "
         "'capability': torch.backends.cpu.get_cpu_capability(), **r}))")


def clean_env(**extra: str) -> dict:
    env = {k: v for k, v in pipeline_env(REPO).items() if k not in KERNEL_VARS}
    return {**env, **extra}


def probe(tmp_path: Path, **extra: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE], env=clean_env(**extra), cwd=tmp_path, capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@needs_avx2
@pytest.mark.parametrize("mode", ["", "avx2", "portable"])
def test_pinned_modes_set_their_switches(tmp_path, mode):
    seen = probe(tmp_path, **({"WILDTRAIN_CPU_KERNELS": mode} if mode else {}))
    assert seen["env"] == {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE"}
    assert seen["capability"] == "AVX2" and seen["repro.cpu_kernels"] == (mode or "avx2")
    portable = mode == "portable"
    assert seen["mkldnn"] is not portable and seen["nnpack"] is not portable  # portable: no oneDNN, no NNPACK
    assert seen["repro.onednn"] == f"{'off' if portable else 'on'}, max ISA AVX2"
    assert seen["repro.nnpack"] == ("off" if portable else "on")
    # MKL really runs the branch asked for (COMPATIBLE is honoured on Intel and AMD alike)
    assert seen["repro.mkl_cbwr"] in ("COMPATIBLE (runs COMPATIBLE)", "COMPATIBLE (runs unknown)")
    assert seen["repro.cpu"].startswith(open("/proc/cpuinfo").read().split("model name")[1].split(":")[1].split("\n")[0].strip())


def test_native_mode_pins_nothing(tmp_path):
    seen = probe(tmp_path, WILDTRAIN_CPU_KERNELS="native")
    assert seen["env"] == {"ATEN_CPU_CAPABILITY": None, "ONEDNN_MAX_CPU_ISA": None, "MKL_CBWR": None}
    assert seen["mkldnn"] is True and seen["nnpack"] is True and seen["repro.cpu_kernels"] == "native"
    assert seen["repro.mkl_cbwr"].startswith("unset")


@needs_avx2
def test_a_users_own_setting_is_kept_and_recorded(tmp_path):
    seen = probe(tmp_path, WILDTRAIN_CPU_KERNELS="portable", MKL_CBWR="AVX2", ONEDNN_MAX_CPU_ISA="SSE41")
    assert seen["env"] == {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_CBWR": "AVX2"}
    # recorded as custom; the rest of the mode still applies (no oneDNN, no NNPACK in portable)
    assert seen["repro.cpu_kernels"] == "custom" and seen["mkldnn"] is False and seen["repro.onednn"] == "off, max ISA SSE41"
    # what MKL made of it is recorded: on AMD CPUs MKL runs its AUTO branch for AVX2
    assert seen["repro.mkl_cbwr"].startswith("AVX2 (runs ")


def test_an_unknown_mode_is_one_error_line(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "stages" / "prepare.py")], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, env=clean_env(WILDTRAIN_CPU_KERNELS="fastest"))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert out.stderr.strip() == ("error: WILDTRAIN_CPU_KERNELS='fastest': expected one of avx2, portable, native")


# A tiny detector trained by the real train stage in a fresh process: 16 synthetic 96 px scenes at imgsz 64.
TRAIN = ("import json, sys; from pathlib import Path; from wildtrain import env; from wildtrain.params import Params, "
         "_build; from wildtrain.pipeline.train import train; root = Path.cwd(); env.configure(root); "
         "p = _build(Params, json.loads(sys.argv[1]), '', 'test'); card = train(p, root, 'detector'); "
         "print('CARD ' + json.dumps(card))")
TINY = {"data": {"synthetic": {"num_images": 16, "image_size": 96, "max_objects": 3}},
        "convert": {"val_fraction": 0.2, "test_fraction": 0.2, "crops": {"enabled": False}},
        "train": {"epochs": 1, "imgsz": 64, "batch": 16, "workers": 0, "device": "cpu", "close_mosaic": 0,
                  "resume": "never"}}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from wildtrain import env
    from wildtrain.params import Params, _build
    from wildtrain.pipeline.convert import convert
    from wildtrain.pipeline.prepare import prepare

    root = tmp_path_factory.mktemp("kernels")
    env.configure(root)
    p = _build(Params, TINY, "", "test")
    prepare(p, root)
    convert(p, root)
    return root


def trained(root: Path, mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", TRAIN, json.dumps(TINY)], cwd=root, capture_output=True, text=True,
                         timeout=900, env=clean_env(WILDTRAIN_CPU_KERNELS=mode,
                                                    MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}",
                                                    YOLO_CONFIG_DIR=str(root / ".ultralytics")))
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads([x for x in out.stdout.splitlines() if x.startswith("CARD ")][-1].removeprefix("CARD "))


@needs_avx2
@pytest.mark.slow
def test_portable_training_is_bit_identical_run_to_run_and_recorded(tiny_data):
    first, second = trained(tiny_data, "portable"), trained(tiny_data, "portable")
    assert first["training"]["mlflow_run_id"] != second["training"]["mlflow_run_id"]  # it trained twice
    assert first["hashes"]["tensors_sha256"] == second["hashes"]["tensors_sha256"]
    t = first["training"]
    assert t["repro.cpu_kernels"] == "portable" and t["repro.onednn"].startswith("off")
    assert t["repro.nnpack"] == "off" and t["repro.mkl_cbwr"].startswith("COMPATIBLE") and t["repro.cpu"]
    # the mode really changes the kernels: oneDNN's convolutions round differently
    assert trained(tiny_data, "avx2")["hashes"]["tensors_sha256"] != first["hashes"]["tensors_sha256"]


def test_the_model_card_says_which_kernels_trained_the_model():
    from wildtrain.contract import ModelCard
    from wildtrain.publish.card import training_section
    from wildtrain.publish.release import Context

    repro = {"repro.cpu_kernels": "portable", "repro.cpu": "AMD EPYC (AuthenticAMD, family 26, model 2)",
             "repro.torch_threads": "2", "repro.cpu_capability": "AVX2", "repro.onednn": "off, max ISA AVX2",
             "repro.nnpack": "off", "repro.mkl_cbwr": "COMPATIBLE (runs COMPATIBLE)", "repro.bit_exact": "true"}
    card = ModelCard(family="detector", task="object-detection", framework="yolo", architecture="yolo11n",
                     class_names=["zebra"], weights="model.pt", input={"size": 64}, training=repro)
    assert ("- CPU kernels: `portable` on AMD EPYC (AuthenticAMD, family 26, model 2), 2 threads; ATen AVX2, oneDNN "
            "off, max ISA AVX2, NNPACK off, MKL_CBWR COMPATIBLE (runs COMPATIBLE)") in training_section(card, Context())
