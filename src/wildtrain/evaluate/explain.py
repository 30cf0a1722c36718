"""Grad-CAM heatmaps for the species classifier: which pixels of a crop pushed it towards its predicted class, so
a reviewer sees whether a call rests on the animal or on the ground, shadow or crop border around it.

A short implementation (Selvaraju et al. 2017: a feature map's channels weighted by the spatially averaged gradient
of the class score) instead of a dependency: the backbones are torchvision's and their stages are known by name.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from wildtrain.io import atomic_path

EXPLANATIONS = "classifier_explanations.png"  # in Paths.plots


MIN_SIDE = 7  # the feature map explained is the deepest one at least this many cells wide (7: ResNet at 224 px)


def _stages(model, architecture: str) -> list:
    if architecture.startswith("resnet"):
        return [model.layer1, model.layer2, model.layer3, model.layer4]
    if architecture.startswith(("efficientnet", "mobilenet")):
        return list(model.features)
    if architecture.startswith("vit"):
        return [model.encoder.layers[-1]]
    raise ValueError(f"no Grad-CAM layer known for backbone '{architecture}'")


def cam_layer(model, architecture: str, size: int):
    """The backbone stage to explain for inputs of `size` px: the deepest whose map is at least MIN_SIDE cells
    wide. Grad-CAM is usually taken on the last stage, but on 64 px crops a ResNet's last map is 2 x 2 cells —
    a heatmap that cannot point at anything — so a shallower, finer stage is taken there."""
    import torch

    stages, sides = _stages(model, architecture), {}
    if len(stages) == 1:
        return stages[0]
    hooks = [m.register_forward_hook(lambda mod, i, o, k=k: sides.__setitem__(k, min(o.shape[-2:])))
             for k, m in enumerate(stages)]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    fine = [k for k in range(len(stages)) if sides.get(k, 0) >= MIN_SIDE]
    return stages[fine[-1] if fine else 0]


def _spatial(t):
    """(B, C, H, W) as is; ViT tokens (B, 1 + N, C) without the class token as (B, C, sqrt N, sqrt N)."""
    if t.dim() == 4:
        return t
    tokens = t[:, 1:]
    side = math.isqrt(tokens.shape[1])
    return tokens.transpose(1, 2).reshape(t.shape[0], t.shape[2], side, side)


def grad_cam(model, layer, x, classes=None) -> np.ndarray:
    """Heatmaps in [0, 1] of shape (B, H, W) at the input's size, for `classes` (default: the predicted ones)."""
    import torch
    import torch.nn.functional as F

    saved: dict = {}

    def keep(module, inputs, output):
        out = output[0] if isinstance(output, tuple) else output
        saved["act"] = out
        out.register_hook(lambda g: saved.__setitem__("grad", g))

    handle = layer.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            model.zero_grad(set_to_none=True)
            logits = model(x.detach().requires_grad_(True))  # gradients flow even through frozen weights
            target = logits.argmax(1) if classes is None else torch.as_tensor(classes, device=logits.device)
            logits.gather(1, target.view(-1, 1)).sum().backward()
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
    act, grad = _spatial(saved["act"].detach()), _spatial(saved["grad"])
    cam = torch.relu((grad.mean(dim=(2, 3), keepdim=True) * act).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).max(1).values.clamp_min(1e-12).view(-1, 1, 1)
    return (cam / peak).float().cpu().numpy()


def pick(labels: list[int], probs: np.ndarray, count: int) -> list[int]:
    """Up to `count` samples: half the most confidently misclassified, the rest the most confident correct ones
    taken class by class in turn (so every class is shown). Deterministic: ties keep file order."""
    pred = probs.argmax(1)
    order = np.argsort(-probs.max(1), kind="stable")
    wrong = [int(i) for i in order if pred[i] != labels[i]]
    chosen = wrong[:count // 2]
    by_class: dict[int, list[int]] = {}
    for i in order:
        if pred[i] == labels[i]:
            by_class.setdefault(int(labels[i]), []).append(int(i))
    queues = [by_class[c] for c in sorted(by_class)]
    while len(chosen) < count and any(queues):
        for q in queues:
            if q and len(chosen) < count:
                chosen.append(q.pop(0))
    chosen += [i for i in wrong[count // 2:] if len(chosen) < count]
    return chosen


def explanations_png(path: Path, crops: list[np.ndarray], cams: np.ndarray, labels: list[int], probs: np.ndarray,
                     class_names: list[str]) -> None:
    """Each picked crop twice: as it is, and with its heatmap over it; titles say truth, prediction and score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(crops)
    cols = 4  # two crops (image, heatmap) per row
    rows = max(1, -(-n // 2))
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.1 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, (crop, cam) in enumerate(zip(crops, cams)):
        pred = int(probs[k].argmax())
        ok = pred == labels[k]
        a, b = axes[k // 2, 2 * (k % 2)], axes[k // 2, 2 * (k % 2) + 1]
        a.imshow(crop)
        a.set_title(f"true {class_names[labels[k]]}", fontsize=7)
        b.imshow(crop)
        b.imshow(cam, cmap="jet", alpha=0.45, vmin=0, vmax=1, extent=(-0.5, crop.shape[1] - 0.5,
                                                                      crop.shape[0] - 0.5, -0.5))
        b.set_title(f"pred {class_names[pred]} {probs[k].max():.2f}", fontsize=7, color="green" if ok else "red")
    if not n:
        axes[0, 0].text(0.5, 0.5, "no crops to explain", ha="center", va="center")
    fig.suptitle("Grad-CAM: where the classifier looked (green: correct, red: misclassified)", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def explain(predictor, files: list[Path], labels: list[int], probs: np.ndarray, count: int, path: Path) -> dict:
    """Grad-CAM of `count` picked test crops into one PNG; returns how many correct and misclassified it shows."""
    import torch

    from wildtrain.data.images import load_rgb

    chosen = pick(labels, probs, count)
    crops = [load_rgb(files[i]) for i in chosen]
    if crops:
        x = predictor.tensors(crops).to(predictor.device)
        layer = cam_layer(predictor.model, predictor.card.architecture, x.shape[-1])
        cams = grad_cam(predictor.model, layer, x, [int(probs[i].argmax()) for i in chosen])
        side = x.shape[-1]
        crops = [np.asarray(torch.nn.functional.interpolate(
            torch.from_numpy(np.array(c)).permute(2, 0, 1)[None].float(), size=(side, side), mode="bilinear",
            align_corners=False)[0].permute(1, 2, 0).clamp(0, 255).byte()) for c in crops]
    else:
        cams = np.zeros((0, 1, 1), np.float32)
    explanations_png(path, crops, cams, [labels[i] for i in chosen], probs[chosen] if chosen else probs[:0],
                     predictor.card.class_names)
    wrong = sum(int(probs[i].argmax() != labels[i]) for i in chosen)
    return {"explained": len(chosen), "explained_misclassified": wrong}
