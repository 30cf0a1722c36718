"""torchvision backbones by name, with a fresh head for our classes: from scratch, ImageNet or a local file.

`pretrained: true` goes through torchvision's weights API (download into the torch hub cache, hash
checked); offline that fails, and the failure becomes one line saying so. A local `weights` file is a
state dict, loaded with `weights_only=True`.
"""

from __future__ import annotations

from pathlib import Path

from wildtrain.errors import WildtrainError

BACKBONES = ("resnet18", "resnet34", "resnet50", "efficientnet_b0", "mobilenet_v3_small", "mobilenet_v3_large",
             "vit_b_16")


def _replace_head(model, name: str, num_classes: int):
    import torch.nn as nn

    if name.startswith("resnet"):
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    elif name.startswith("vit"):
        model.heads.head = nn.Linear(model.heads.head.in_features, num_classes)
    else:  # efficientnet, mobilenet_v3: the last layer of `classifier`
        model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, num_classes)
    return model


def _imagenet_state_dict(name: str) -> dict:
    from torchvision.models import get_model_weights

    weights = get_model_weights(name).DEFAULT
    try:
        return weights.get_state_dict(progress=False, check_hash=True, weights_only=True)
    except (OSError, RuntimeError) as e:  # URLError is an OSError; a truncated download a RuntimeError
        reason = str(getattr(e, "reason", e)).splitlines()[0] if str(e) else type(e).__name__
        raise WildtrainError(
            f"classifier.pretrained: cannot fetch ImageNet weights for {name} from {weights.url} ({reason}); "
            f"offline, set pretrained: false, or put a local state dict in classifier.weights") from None


def _load_local(path: Path, key: str) -> dict:
    import torch

    if not path.is_file():
        raise WildtrainError(f"{key}: weights file '{path}' not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a pickle with objects, a truncated file, not a torch file at all
        raise WildtrainError(f"{key}: '{path}' is not a loadable state dict ({str(e).splitlines()[0][:200]})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a checkpoint that wraps its state dict
    if not isinstance(state, dict):
        raise WildtrainError(f"{key}: '{path}' holds a {type(state).__name__}, expected a state dict")
    return state


def _load_into(model, state: dict, source: str, num_classes: int, key: str) -> None:
    """Load `state` into a model with our head. An ImageNet head (1000 outputs) is left fresh; any other
    head size means the file was trained for other classes, which is an error."""
    own = model.state_dict()
    head = [k for k, v in own.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if any(state[k].shape[0] != 1000 for k in head):
        k = next(k for k in head if state[k].shape[0] != 1000)
        raise WildtrainError(f"{key}: '{source}' was trained for {state[k].shape[0]} classes but the data has "
                             f"{num_classes} ({k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)})")
    missing, unexpected = model.load_state_dict({k: v for k, v in state.items() if k not in head}, strict=False)
    missing = [k for k in missing if k not in head]
    if missing or unexpected:
        what = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise WildtrainError(f"{key}: '{source}' does not fit {type(model).__name__} ({len(missing)} missing, "
                             f"{len(unexpected)} unexpected keys; {what})")


def build(name: str, num_classes: int, pretrained: bool = False, weights: str | Path = "",
          key: str = "classifier.weights") -> "torch.nn.Module":
    """A backbone with a `num_classes` head; body from ImageNet (`pretrained`) or a local state dict (`weights`)."""
    from torchvision.models import get_model

    if name not in BACKBONES:
        raise WildtrainError(f"classifier.backbone: unknown backbone '{name}' (available: {', '.join(BACKBONES)})")
    if num_classes < 2:
        raise WildtrainError(f"classifier: need at least 2 classes to train a classifier, got {num_classes}")
    model = _replace_head(get_model(name, weights=None), name, num_classes)
    if weights:
        _load_into(model, _load_local(Path(weights), key), str(weights), num_classes, key)
    elif pretrained:
        _load_into(model, _imagenet_state_dict(name), f"ImageNet {name}", num_classes, "classifier.pretrained")
    return model


def _head_prefix(model, name: str) -> str:
    if name.startswith("resnet"):
        return "fc."
    if name.startswith("vit"):
        return "heads.head."
    return f"classifier.{len(model.classifier) - 1}."


def feature_extractor(name: str, weights: str | Path = "", key: str = "rebalance.weights") -> "torch.nn.Module":
    """The backbone without its head (pooled features out): from a local state dict — one of our classifiers, an
    ImageNet-style file, whatever its number of classes — or, without one, the backbone's seeded initialisation."""
    import torch.nn as nn

    num_classes = 2
    if weights:
        state = _load_local(Path(weights), key)
        head = state.get(_head_prefix(build(name, 2), name) + "weight")
        num_classes = int(head.shape[0]) if head is not None else 2
    model = build(name, num_classes, weights=weights, key=key)
    if name.startswith("resnet"):
        model.fc = nn.Identity()
    elif name.startswith("vit"):
        model.heads.head = nn.Identity()
    else:
        model.classifier[-1] = nn.Identity()
    return model.eval()
