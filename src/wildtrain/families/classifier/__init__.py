"""The species classifier family: a torchvision backbone trained with Lightning on the ROI crops (ImageFolder),
predicting class probabilities for crops given as arrays (resized and normalized as in training)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from wildtrain.contract import Classification, Exported, ExportIO, ModelCard, Trained, TrainData, check_options
from wildtrain.io import read_json
from wildtrain.layout import CROPS_INFO

WEIGHTS = "model.pt"  # a plain state dict of the backbone (loaded with weights_only=True)
PARITY_CROPS = 8  # held-out crops the exports are compared on


class ClassifierPredictor:
    def __init__(self, card: ModelCard, model, device: str):
        self.card, self.model, self.device = card, model, device
        from wildtrain.families.classifier.data import transforms

        self.transform = transforms(int(card.input["size"]))

    def options(self) -> dict:
        return {"batch": 64}

    def tensors(self, images: Sequence[np.ndarray]):
        """The normalized batch the network sees (also what exports are checked on)."""
        import torch

        return torch.stack([self.transform(image=im)["image"] for im in images])

    def predict(self, images: Sequence[np.ndarray], **options) -> list[Classification]:
        import torch

        batch = int(check_options(options, self.options(), "classifier predict")["batch"])
        out: list[Classification] = []
        with torch.inference_mode():
            for start in range(0, len(images), max(1, batch)):
                x = self.tensors(images[start:start + batch]).to(self.device)
                probs = torch.softmax(self.model(x), dim=1).float().cpu().numpy()
                out += [Classification(row.tolist()) for row in probs]
        return out


class ClassifierFamily:
    name, task = "classifier", "classification"
    train_section, evaluate_section, register_section = "classifier", "classifier_evaluate", "classifier_register"
    suffix = "_classifier"  # metrics/eval_classifier.json, metrics/register_classifier.json, metrics/train_classifier/
    requirements = ()  # served-model packages beyond the framework's
    plot_files = ("classifier_confusion.png", "classifier_misclassified.png", "classifier_explanations.png")

    def model_dir(self, p, root: Path) -> Path:
        return root / p.paths.classifier

    def train(self, cfg, data: TrainData, workdir: Path, resume: bool, on_epoch) -> Trained | None:
        """None in the extra processes of DDP training (rank 0 returns the model)."""
        from wildtrain.contract import tensors_sha256
        from wildtrain.families.classifier.data import MEAN, STD
        from wildtrain.families.classifier.datamodule import CropDataModule
        from wildtrain.families.classifier.trainer import build_module, fit
        from wildtrain.io import write_torch

        dm = CropDataModule(data.crops, cfg, plan=data.crops_plan, stream=data.stream, buffer=data.stream_buffer)
        module = build_module(cfg, dm, data.root)
        result = fit(cfg, dm, module, workdir, on_epoch, resume=resume)
        if result.state_dict is None:
            return None
        weights = workdir / WEIGHTS
        write_torch(weights, result.state_dict)
        crops = data.crops / CROPS_INFO
        crop = read_json(crops, "crops info") if crops.is_file() else {}
        return Trained(files={WEIGHTS: weights}, weights=WEIGHTS, architecture=cfg.backbone, framework="lightning",
                       input={"size": cfg.imgsz, "channels": "RGB", "dtype": "uint8", "mean": list(MEAN),
                              "std": list(STD), "crop": crop},
                       epochs_completed=result.epochs_completed, resumed=result.resumed_after_epochs is not None,
                       tensors_sha256=tensors_sha256(result.state_dict), class_names=dm.classes,
                       extra={"monitor": cfg.monitor,
                              "best_val": result.best_score, "resumed_after_epochs": result.resumed_after_epochs,
                              "class_counts": dict(zip(dm.classes, dm.train_split.counts(dm.num_classes))),
                              "rebalanced": dm.rebalanced})

    def load(self, model_dir: Path, device: str = "auto") -> ClassifierPredictor:
        import torch

        from wildtrain.devices import resolve_device
        from wildtrain.families.classifier.backbones import build

        card = ModelCard.load(model_dir)
        model = build(card.architecture, len(card.class_names), weights=model_dir / card.weights,
                      key=str(model_dir / card.weights))
        dev = resolve_device(device, "device").split(",")[0]
        return ClassifierPredictor(card, model.eval().to(torch.device(dev)), dev)

    def table_type(self):
        from wildtrain.evaluate.classification import ClassificationTable

        return ClassificationTable

    def evaluate(self, predictor: ClassifierPredictor, p, root: Path, write_outputs: bool) -> tuple:
        from wildtrain.evaluate.classification import evaluate_classifier
        from wildtrain.families.classifier.data import scan_split

        return evaluate_classifier(predictor, p, root, write_outputs, scan_split)

    def lineage(self, p, root: Path) -> dict[str, str]:
        return {}

    def export(self, model_dir: Path, out_dir: Path, p, root: Path) -> Exported:
        """ONNX and TorchScript, with the PyTorch model's logits on PARITY_CROPS real held-out crops (preprocessed
        as predict does) for publishing to check both against."""
        import torch

        from wildtrain.data.images import load_rgb
        from wildtrain.families.classifier.data import scan_split
        from wildtrain.families.torch_export import export

        predictor = self.load(model_dir, "cpu")
        card = predictor.card
        crops = scan_split(root / p.paths.crops / p.classifier_evaluate.split, card.class_names,
                           require_all=False, check_images=False)
        batch = predictor.tensors([load_rgb(f) for f in crops.files[:PARITY_CROPS]])
        files = export(predictor.model, int(card.input["size"]), out_dir)
        with torch.inference_mode():
            logits = predictor.model.eval()(batch).float().numpy()
        io = ExportIO(size=int(card.input["size"]), resize="stretch", mean=tuple(card.input["mean"]),
                      std=tuple(card.input["std"]), output="logits", output_dims=("batch", "class"),
                      output_shape=(-1, len(card.class_names)), classes=tuple(card.class_names),
                      input_name="images", output_name="logits")
        return Exported(files=files, io=io, reference=(batch.numpy(), logits),
                        total_parameters=int(sum(t.numel() for t in predictor.model.parameters())))


FAMILY = ClassifierFamily()
