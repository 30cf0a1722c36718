"""The U-Net: segmentation-models-pytorch's Unet, its encoder built from scratch or loaded from a local file.

Nothing is downloaded: smp's `encoder_weights` is always None. `weights` is a state dict (loaded with
`weights_only=True`) of either the encoder alone — e.g. torchvision's ImageNet resnet18, whose keys smp's
ResNet encoders share (its `fc` head is skipped) — or a whole U-Net (keys `encoder.`, `decoder.`,
`segmentation_head.`), whose head is kept only when it was trained for the same classes.
"""

from __future__ import annotations

from pathlib import Path

from wildtrain.errors import WildtrainError

KEY = "segmenter.weights"


def decoder_channels(last: int, depth: int) -> list[int]:
    """Channels per decoder block, deepest first: `last` doubled per block above it (16, 5 -> 256 ... 16)."""
    return [last * 2 ** (depth - 1 - k) for k in range(depth)]


def _load_local(path: Path) -> dict:
    import torch

    if not path.is_file():
        raise WildtrainError(f"{KEY}: weights file '{path}' not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 — a pickle with objects, a truncated file, not a torch file at all
        raise WildtrainError(f"{KEY}: '{path}' is not a loadable state dict ({str(e).splitlines()[0][:200]})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WildtrainError(f"{KEY}: '{path}' holds a {type(state).__name__}, expected a state dict")
    return state


def _load_into(model, state: dict, source: str) -> None:
    """A whole U-Net (head kept when its shape fits) or an encoder alone (a classifier head is skipped)."""
    whole = any(k.startswith("encoder.") for k in state)
    target = model if whole else model.encoder
    own = target.state_dict()
    skip = {k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)}
    if whole and any(not k.startswith("segmentation_head.") for k in skip):
        k = next(k for k in skip if not k.startswith("segmentation_head."))
        raise WildtrainError(f"{KEY}: '{source}' is a U-Net of another shape ({k}: {tuple(state[k].shape)} vs "
                             f"{tuple(own[k].shape)})")
    extra = {k for k in state if k not in own and not k.startswith("fc.")}  # torchvision's classifier head
    missing = sorted(set(own) - set(state) - (skip if whole else set()))
    if whole:
        missing = [k for k in missing if not k.startswith("segmentation_head.")]
    if missing or extra:
        what = f"missing {missing[0]}" if missing else f"unexpected {sorted(extra)[0]}"
        raise WildtrainError(f"{KEY}: '{source}' does not fit the {'U-Net' if whole else 'encoder'} "
                             f"({len(missing)} missing, {len(extra)} unexpected keys; {what})")
    target.load_state_dict({k: v for k, v in state.items() if k in own and k not in skip}, strict=False)


def build(encoder: str, depth: int, last_channels: int, num_classes: int, weights: str | Path = ""):
    """A U-Net with `num_classes` outputs per pixel (logits)."""
    import segmentation_models_pytorch as smp

    if num_classes < 2:
        raise WildtrainError(f"segmenter: need the background and at least one class, got {num_classes} class(es)")
    if encoder not in smp.encoders.get_encoder_names() and not encoder.startswith("tu-"):
        raise WildtrainError(f"segmenter.encoder: unknown encoder '{encoder}' (e.g. resnet18, resnet34, mobilenet_v2, "
                             f"efficientnet-b0, tu-<timm model>; see segmentation_models_pytorch.encoders)")
    try:
        model = smp.Unet(encoder_name=encoder, encoder_weights=None, encoder_depth=depth, classes=num_classes,
                         decoder_channels=decoder_channels(last_channels, depth))
    except (KeyError, ValueError, RuntimeError) as e:
        raise WildtrainError(f"segmenter.encoder: cannot build '{encoder}' ({str(e).splitlines()[0][:200]})") from None
    if weights:
        _load_into(model, _load_local(Path(weights)), str(weights))
    return model
