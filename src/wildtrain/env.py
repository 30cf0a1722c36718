"""Offline, project-local settings for the tools we drive, applied before they are imported.

Without these, Ultralytics probes DNS, checks PyPI and fetches a font from GitHub, MLflow and DVC send
telemetry, and albumentations asks PyPI for its version (see docs/explanation/offline-and-safety.md).
Ultralytics' settings live in a project-local folder so the user's global settings are never touched.
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
# machine kind. Each mode below fixes what can be fixed by environment before the libraries start
# (docs/explanation/reproducibility.md, measured by benchmarks/cpu_kernels.py):
# - avx2 (default): PyTorch's own kernels (ATen) and oneDNN (convolutions) on their AVX2 paths, and MKL (matrix
#   products) on its vendor-neutral code branch. MKL honours MKL_CBWR=AVX2 only on Intel CPUs: on AMD it runs its
#   AUTO branch instead (mkl_serv_cbwr_get says so here), so the pins of earlier versions left MKL on different
#   code on Intel and AMD. COMPATIBLE is the one branch MKL documents as the same on both. oneDNN still sizes its
#   blocks from the CPU's caches, so CPU models may still disagree.
# - portable: as avx2, and convolutions without oneDNN and NNPACK (ATen's im2col + MKL's COMPATIBLE sgemm), so
#   no kernel reads the CPU's vendor or cache sizes: 1.4-2x the training CPU time
#   (docs/explanation/reproducibility.md), so not the default.
# - native: nothing pinned; the fastest kernels of this CPU, results depend on it.
CPU_KERNEL_MODES = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE"},
    "portable": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE"},
    "native": {},
}
DEFAULT_KERNELS = "avx2"
CPU_KERNEL_ENV = CPU_KERNEL_MODES[DEFAULT_KERNELS]
KERNELS_SWITCH = "WILDTRAIN_CPU_KERNELS"  # avx2 (default) | portable | native
# MKL's code branches (mkl_cbwr.h), as mkl_serv_cbwr_get reports the one in use
MKL_BRANCHES = {0: "OFF", 1: "OFF", 2: "AUTO", 3: "COMPATIBLE", 4: "SSE2", 6: "SSSE3", 7: "SSE4_1", 8: "SSE4_2",
                9: "AVX", 10: "AVX2", 12: "AVX512", 14: "AVX512_E1"}


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
    """Vendor, model name, family and model: what decides the kernels and their cache blocking."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    if "model name" not in fields:
        return platform.processor() or platform.machine()
    return (f"{fields['model name']} ({fields.get('vendor_id', '?')}, family {fields.get('cpu family', '?')}, "
            f"model {fields.get('model', '?')})")


def cpu_kernel_mode() -> str:
    """The mode asked for (WILDTRAIN_CPU_KERNELS, default avx2); 'native' where pins do not apply (not x86-64, or
    no AVX2)."""
    mode = os.environ.get(KERNELS_SWITCH, "").strip().lower() or DEFAULT_KERNELS
    if mode not in CPU_KERNEL_MODES:
        from wildtrain.errors import WildtrainError

        raise WildtrainError(f"{KERNELS_SWITCH}={os.environ[KERNELS_SWITCH]!r}: expected one of "
                             f"{', '.join(CPU_KERNEL_MODES)}")
    if platform.machine().lower() not in ("x86_64", "amd64") or "avx2" not in _cpu_flags():
        return "native"
    return mode


def pin_cpu_kernels() -> str:
    """Set the mode's environment (before the first tensor op; the libraries read it once, lazily); returns the
    mode, or 'custom' where a variable the user set (kept) differs from it."""
    mode = cpu_kernel_mode()
    wanted = CPU_KERNEL_MODES[mode]
    for key, value in wanted.items():
        os.environ.setdefault(key, value)
    return mode if all(os.environ[k] == v for k, v in wanted.items()) else "custom"


def apply_torch_kernels() -> None:
    """The part of a mode that is not an environment variable: portable turns off oneDNN and NNPACK in this
    process (before its first convolution). Called wherever a torch device is chosen (wildtrain.devices), so every
    process that trains or predicts, DDP workers included, gets it; other modes leave torch's defaults alone."""
    if cpu_kernel_mode() != "portable":
        return
    import torch

    torch.backends.mkldnn.enabled = False  # convolutions: ATen's im2col + MKL sgemm instead of oneDNN
    torch.backends.nnpack.set_flags(False)  # NNPACK (forward convolutions, batch >= 16) blocks by cache size too


def mkl_branch() -> str:
    """The code branch MKL runs (it may differ from MKL_CBWR: on AMD, AVX2 becomes AUTO); 'unknown' if MKL's
    service call is not there (no MKL, another build)."""
    import ctypes

    import torch

    if not torch.backends.mkl.is_available():
        return "no MKL"
    try:
        lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
        get = lib.mkl_serv_cbwr_get
    except (OSError, AttributeError):
        return "unknown"
    get.restype, get.argtypes = ctypes.c_int, [ctypes.c_int]
    value = get(1)  # MKL_CBWR_BRANCH
    return MKL_BRANCHES.get(value, str(value))


def reproducibility(device: str) -> dict[str, str]:
    """What decides whether a rerun gives the same bits, recorded on every training run (MLflow tags, model card)."""
    import torch

    # the device the training ran on, read as wildtrain.devices.resolve_device reads it (not imported from there:
    # devices imports this module); auto is CUDA when present, else MPS or CPU
    d = str(device).strip().lower()
    cuda = torch.cuda.is_available() if d == "auto" else d not in ("cpu", "mps")
    mode = pin_cpu_kernels()
    exact = {"portable": "true on this CPU model; portable kernels, meant to match any x86-64 CPU with AVX2",
             "avx2": "true on this CPU model (pinned kernels)", "custom": "true on this CPU model (custom kernels)",
             "native": "true on this CPU model (native kernels)"}[mode]
    return {"repro.cpu_kernels": mode, "repro.torch_threads": str(torch.get_num_threads()),
            "repro.cpu": _cpu_model(),
            "repro.cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "repro.onednn": f"{'on' if torch.backends.mkldnn.enabled else 'off'}, max ISA "
                            f"{os.environ.get('ONEDNN_MAX_CPU_ISA', 'unset')}",
            "repro.nnpack": "on" if torch._C._get_nnpack_enabled() else "off",
            "repro.mkl_cbwr": f"{os.environ.get('MKL_CBWR', 'unset')} (runs {mkl_branch()})",
            # CUDA training uses kernels (atomics in convolution backward, upsampling) that are not bit-exact
            "repro.bit_exact": "false (CUDA)" if cuda else exact}


def find_project(start: str | os.PathLike | None = None) -> Path | None:
    """The nearest folder holding dvc.yaml (the pipeline's root) at or above `start`, or None outside a project."""
    here = Path(start or os.getcwd()).resolve()
    for p in (here, *here.parents):
        if (p / "dvc.yaml").is_file():
            return p
    return None


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The nearest folder holding dvc.yaml (the pipeline's root), else the current folder."""
    return find_project(start) or Path(start or os.getcwd()).resolve()


def cache_dir() -> Path:
    """Where wildtrain keeps what it needs outside a project (Ultralytics' settings and font, downloaded models):
    WILDTRAIN_CACHE_DIR, else $XDG_CACHE_HOME/wildtrain, else ~/.cache/wildtrain — never the current folder."""
    explicit = os.environ.get("WILDTRAIN_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "wildtrain"


def configure(root: Path | None = None) -> Path:
    """Set offline switches (without overriding what the user set) and Ultralytics' settings folder: the project's
    `.ultralytics/` inside a project (or under `root` when given), else the user cache (cache_dir()), so that a
    command run outside a project writes nothing into the current folder. Returns `root`, else the project's
    root, else the current folder."""
    project = root or find_project()
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    forbid_runtime_installs()
    pin_cpu_kernels()
    settings = project / ".ultralytics" if project else cache_dir() / "ultralytics"
    config_dir = Path(os.environ.setdefault("YOLO_CONFIG_DIR", str(settings)))
    font_dir = config_dir / "Ultralytics"
    font = font_dir / "Arial.ttf"
    if not font.exists():
        # Ultralytics' check_font downloads Arial.ttf from GitHub; any TTF will do for its plots.
        import matplotlib

        src = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        font_dir.mkdir(parents=True, exist_ok=True)
        if src.exists():
            shutil.copyfile(src, font)
    return project or Path.cwd()


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
