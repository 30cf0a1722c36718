"""Device selection shared by every framework: `auto` is CUDA if present, else Apple MPS, else CPU."""

from __future__ import annotations

from wildtrain.errors import WildtrainError


def resolve_device(device: str, key: str = "train.device") -> str:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' | 'N' | 'N,M' | 'mps' -> a torch-style device string.

    `key` is the param named in error messages. Every training and every model load passes here, so this is
    where the CPU kernel mode's torch switches are applied (wildtrain.env.apply_torch_kernels).
    """
    import torch

    from wildtrain.env import apply_torch_kernels

    apply_torch_kernels()

    d = str(device).strip().lower()
    if d == "auto":
        if torch.cuda.is_available():
            return "cuda:0"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if d == "cpu":
        return "cpu"
    if d == "mps":
        if not torch.backends.mps.is_available():
            raise WildtrainError(f"{key}: 'mps' requested but Apple MPS is not available on this machine")
        return d
    indices = d.removeprefix("cuda:").removeprefix("cuda")
    if d in ("cuda", "gpu"):
        indices = "0"
    parts = [p for p in indices.split(",") if p != ""]
    if not parts or not all(p.isdigit() for p in parts):
        raise WildtrainError(f"{key}: expected auto, cpu, mps, cuda, cuda:N or N[,M], got '{device}'")
    if not torch.cuda.is_available():
        raise WildtrainError(f"{key}: '{device}' requested but no CUDA device is available (use auto or cpu)")
    n = torch.cuda.device_count()
    for p in parts:
        if int(p) >= n:
            raise WildtrainError(f"{key}: GPU {p} requested but only {n} CUDA device(s) are visible")
    return "cuda:" + ",".join(parts) if len(parts) == 1 else ",".join(parts)


def lightning_devices(device: str, count: int, key: str) -> tuple[str, int | list[int]]:
    """(accelerator, devices) for a Lightning Trainer: `count` processes (CPU) or GPUs, or the listed GPUs."""
    d = resolve_device(device, key)
    if d in ("cpu", "mps"):
        return d, count if d == "cpu" else 1
    ids = [int(i) for i in d.removeprefix("cuda:").split(",")]
    return "gpu", ids if len(ids) > 1 or count == 1 else count
