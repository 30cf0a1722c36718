"""The trained classifier back from `models_classifier/` (a state dict, `weights_only=True`), and batch prediction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from wildtrain.classifier.backbones import build
from wildtrain.classifier.data import CropDataset, Split, transforms
from wildtrain.devices import resolve_device


def load_model(info: dict, model_dir: Path) -> torch.nn.Module:
    """The backbone with our head; a file trained for other classes is refused by `build`."""
    model = build(info["backbone"], len(info["class_names"]), weights=model_dir / info["weights"],
                  key=f"{model_dir / info['weights']}")
    return model.eval()


def predict(model: torch.nn.Module, files: list[Path], imgsz: int, batch: int, device: str) -> np.ndarray:
    """Softmax probabilities, one row per file, in order."""
    dev = torch.device(resolve_device(device, "classifier_evaluate.device").split(",")[0])
    model = model.to(dev)
    loader = DataLoader(CropDataset(Split(files, [0] * len(files)), transforms(imgsz)), batch_size=batch)
    out = []
    with torch.inference_mode():
        for x, _ in loader:
            out.append(torch.softmax(model(x.to(dev)), dim=1).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
