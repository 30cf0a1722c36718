"""Offline, project-local settings for the tools we drive, applied before they are imported.

Without these, Ultralytics probes DNS, checks PyPI and fetches a font from GitHub, MLflow and DVC send
telemetry, and albumentations asks PyPI for its version (see README "Offline"). Ultralytics' settings
live in a project-local folder so the user's global settings are never touched.
"""

from __future__ import annotations

import os
import platform
import shutil
from pathlib import Path

OFFLINE_ENV = {
    "YOLO_OFFLINE": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
    "NO_ALBUMENTATIONS_UPDATE": "1",
    "YOLO_VERBOSE": "False",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # a bar per model download drowns the one line that matters
}

# Ultralytics pip-installs a missing requirement when it meets one at run time ("attempting AutoUpdate..."): a
# non-image file sent to the served model made it try `pip install pi-heif`. Nothing is installed at run time, online
# or not: forced, not a default the environment may override.
NO_INSTALL_ENV = {"YOLO_AUTOINSTALL": "False"}


def forbid_runtime_installs() -> None:
    """Switch Ultralytics' AutoUpdate off in this process and its children, also where it is already imported."""
    import sys

    os.environ.update(NO_INSTALL_ENV)
    for name in ("ultralytics.utils", "ultralytics.utils.checks"):  # both read the switch once, at import
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "AUTOINSTALL"):
            module.AUTOINSTALL = False


# x86 CPUs choose kernels by instruction set (AVX2, AVX-512, AMX), and each choice rounds differently: the
# same training gave other weights, and test mAP50 0.629 instead of 0.653, on another host of the same
# machine kind. Pinning PyTorch's own kernels, oneDNN (convolutions) and MKL (matrix products) to their AVX2
# code paths makes Xeons with and without AVX-512 agree. It does not make CPU vendors agree: an AMD EPYC
# pinned the same way trained other weights than the Xeon (README "Reproducibility").
CPU_KERNEL_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}
KERNELS_SWITCH = "WILDTRAIN_CPU_KERNELS"  # avx2 (default) | native: fastest kernels, bits depend on the host


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def pin_cpu_kernels() -> str:
    """Pin CPU kernels to AVX2 (before the first tensor op; the libraries read these lazily); returns the mode.

    'native' when asked for, or where the pins do not apply (not x86-64, or no AVX2); a variable the user
    set is kept."""
    if os.environ.get(KERNELS_SWITCH, "avx2").lower() == "native":
        return "native"
    if platform.machine().lower() not in ("x86_64", "amd64") or "avx2" not in _cpu_flags():
        return "native"
    for key, value in CPU_KERNEL_ENV.items():
        os.environ.setdefault(key, value)
    return "avx2" if all(os.environ[k] == v for k, v in CPU_KERNEL_ENV.items()) else "custom"


def reproducibility(device: str) -> dict[str, str]:
    """What decides whether a rerun gives the same bits, recorded on every training run (MLflow tags)."""
    import torch

    from wildtrain.devices import resolve_device

    try:
        cuda = not resolve_device(device).startswith(("cpu", "mps"))
    except Exception:  # noqa: BLE001 — a record, never a reason to fail after training
        cuda = torch.cuda.is_available()
    return {"repro.cpu_kernels": pin_cpu_kernels(), "repro.torch_threads": str(torch.get_num_threads()),
            "repro.cpu": _cpu_model(),
            "repro.cpu_capability": torch.backends.cpu.get_cpu_capability(),
            # CUDA training uses kernels (atomics in convolution backward, upsampling) that are not bit-exact
            "repro.bit_exact": "false (CUDA)" if cuda else "true on this CPU model (pinned kernels)"}


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The nearest folder holding dvc.yaml (the pipeline's root), else the current folder."""
    here = Path(start or os.getcwd()).resolve()
    for p in (here, *here.parents):
        if (p / "dvc.yaml").is_file():
            return p
    return here


def configure(root: Path | None = None) -> Path:
    """Set offline switches (without overriding what the user set) and a project-local Ultralytics dir."""
    root = root or project_root()
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    forbid_runtime_installs()
    pin_cpu_kernels()
    config_dir = Path(os.environ.setdefault("YOLO_CONFIG_DIR", str(root / ".ultralytics")))
    font_dir = config_dir / "Ultralytics"
    font = font_dir / "Arial.ttf"
    if not font.exists():
        # Ultralytics' check_font downloads Arial.ttf from GitHub; any TTF will do for its plots.
        import matplotlib

        src = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        font_dir.mkdir(parents=True, exist_ok=True)
        if src.exists():
            shutil.copyfile(src, font)
    return root


def configure_ultralytics() -> None:
    """Turn off Ultralytics' own MLflow/dvclive/W&B callbacks (we log explicitly) in the project-local settings."""
    from ultralytics.utils import SETTINGS

    forbid_runtime_installs()
    off = ("mlflow", "dvc", "wandb", "clearml", "comet", "raytune", "tensorboard", "sync")
    wanted = {k: False for k in off if k in SETTINGS}
    if any(SETTINGS.get(k) != v for k, v in wanted.items()):
        SETTINGS.update(wanted)


def tracking_uri(root: Path | None = None) -> str:
    """MLFLOW_TRACKING_URI if set (any server or store), else a sqlite store in the project root."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    root = root or project_root()
    return f"sqlite:///{root / 'mlflow.db'}"
