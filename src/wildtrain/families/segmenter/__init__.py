"""The semantic segmenter family: a segmentation-models-pytorch U-Net trained with Lightning on the masks of the
canonical split files, predicting a class map per image (background + the dataset's classes).

Images are resized as in training (long side to `size`, padded to a square), the padding is cut off the
logits, and class probabilities are resized back to the image. Images larger than those it was trained on are
predicted in overlapping windows whose probabilities are blended (wildtrain.slicing.predict_blended): no seams.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from wildtrain.errors import WildtrainError
from wildtrain.contract import (Exported, ExportIO, ModelCard, Segmentation, Trained, TrainData,
                                    check_options)
from wildtrain.slicing import predict_blended, slice_size

WEIGHTS = "model.pt"  # a plain state dict of the U-Net (loaded with weights_only=True)
PARITY_IMAGES = 4  # held-out images the exports are compared on
DEFAULT_OVERLAP = 0.2


class SegmenterPredictor:
    def __init__(self, card: ModelCard, model, device: str):
        from wildtrain.families.segmenter.data import resize, transforms

        self.card, self.model, self.device = card, model, device
        self.size = int(card.input["size"])
        self.resize, self.finish = resize(self.size), transforms(self.size, with_resize=False)

    def options(self) -> dict:
        return {"slice": "auto", "overlap": float(self.card.input.get("overlap", DEFAULT_OVERLAP)), "batch": 16}

    def tensors(self, images: Sequence[np.ndarray]):
        """The normalized batch the network sees (also what exports are checked on), and each image's size
        once resized (the rest is padding)."""
        import torch

        resized = [self.resize(image=im)["image"] for im in images]
        return torch.stack([self.finish(image=r)["image"] for r in resized]), [r.shape[:2] for r in resized]

    def probabilities(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """(classes, h, w) float32 class probabilities per image, at the image's own size."""
        import torch
        import torch.nn.functional as F

        x, shapes = self.tensors(images)
        with torch.inference_mode():
            probs = torch.softmax(self.model(x.to(self.device)).float(), dim=1)
            out = []
            for p, (h, w), im in zip(probs, shapes, images):
                p = F.interpolate(p[None, :, :h, :w], size=im.shape[:2], mode="bilinear", align_corners=False)
                out.append(p[0].cpu().numpy())
        return out

    def predict(self, images: Sequence[np.ndarray], **options) -> list[Segmentation]:
        o = check_options(options, self.options(), "segmenter predict")
        train_size = int(self.card.input.get("image_size") or self.size)
        try:
            slice_size(o["slice"], (0, 0), train_size)  # a bad option is refused even with no image
            sizes = [slice_size(o["slice"], im.shape, train_size) for im in images]
        except ValueError as e:
            raise WildtrainError(str(e)) from None
        if not 0 <= float(o["overlap"]) < 1:
            raise WildtrainError(f"overlap: expected a fraction in [0, 1), got {o['overlap']}")
        batch = max(1, int(o["batch"]))
        maps = predict_blended(self.probabilities, images, sizes, overlap=float(o["overlap"]), batch=batch)
        return [Segmentation(m) for m in maps]


class SegmenterFamily:
    name, task = "segmenter", "semantic-segmentation"
    train_section, evaluate_section, register_section = "segmenter", "segmenter_evaluate", "segmenter_register"
    suffix = "_segmenter"  # metrics/eval_segmenter.json, metrics/register_segmenter.json, metrics/train_segmenter/
    requirements = ("segmentation-models-pytorch==", "timm==", "huggingface-hub==", "safetensors==")  # served-model packages beyond the framework's
    plot_files = ("segmenter_confusion.png", "segmenter_examples.png")

    def model_dir(self, p, root: Path) -> Path:
        return root / p.paths.segmenter

    def train(self, cfg, data: TrainData, workdir: Path, resume: bool, on_epoch) -> Trained | None:
        """None in the extra processes of DDP training (rank 0 returns the model)."""
        from wildtrain.contract import tensors_sha256
        from wildtrain.families.segmenter.data import MEAN, STD
        from wildtrain.families.segmenter.datamodule import MaskDataModule
        from wildtrain.families.segmenter.trainer import build_module, fit
        from wildtrain.io import write_torch

        dm = MaskDataModule(data.coco, cfg, stream=data.stream, buffer=data.stream_buffer)
        if dm.train_split.with_mask == 0:
            print(f"train: note: {data.coco['train'].name} has no masks; the segmenter learns the filled boxes "
                  f"(segmenter.missing_masks: {cfg.missing_masks})", flush=True)
        module = build_module(cfg, dm, data.root)
        result = fit(cfg, dm, module, workdir, on_epoch, resume=resume)
        if result.state_dict is None:
            return None
        weights = workdir / WEIGHTS
        write_torch(weights, result.state_dict)
        overlap = data.tiling["overlap"] if data.tiling else DEFAULT_OVERLAP
        return Trained(files={WEIGHTS: weights}, weights=WEIGHTS, architecture=f"unet-{cfg.encoder}",
                       framework="lightning",
                       input={"size": cfg.imgsz, "image_size": data.image_size, "overlap": overlap,
                              "tiling": data.tiling, "channels": "RGB", "dtype": "uint8", "mean": list(MEAN),
                              "std": list(STD), "resize": "long side to size, padded to a square (top-left)",
                              "encoder": cfg.encoder, "encoder_depth": cfg.encoder_depth,
                              "decoder_channels": cfg.decoder_channels, "missing_masks": cfg.missing_masks},
                       epochs_completed=result.epochs_completed, resumed=result.resumed_after_epochs is not None,
                       tensors_sha256=tensors_sha256(result.state_dict), class_names=dm.classes,
                       extra={"monitor": cfg.monitor, "best_val": result.best_score,
                              "resumed_after_epochs": result.resumed_after_epochs,
                              "category_ids": data.category_ids, "class_weights": dm.class_weights(),
                              "dataset_stats": dm.stats(cfg.seed)})

    def load(self, model_dir: Path, device: str = "auto") -> SegmenterPredictor:
        import torch

        from wildtrain.devices import resolve_device
        from wildtrain.families.segmenter.network import build

        card = ModelCard.load(model_dir)
        i = card.input
        model = build(i["encoder"], int(i["encoder_depth"]), int(i["decoder_channels"]), len(card.class_names),
                      weights=model_dir / card.weights)
        dev = resolve_device(device, "device").split(",")[0]
        return SegmenterPredictor(card, model.eval().to(torch.device(dev)), dev)

    def table_type(self):
        from wildtrain.evaluate.segmentation import SegmentationTable

        return SegmentationTable

    def evaluate(self, predictor: SegmenterPredictor, p, root: Path, write_outputs: bool) -> tuple:
        from wildtrain.evaluate.segmentation import evaluate_segmenter
        from wildtrain.families.segmenter.data import Split

        return evaluate_segmenter(predictor, p, root, write_outputs, Split)

    def lineage(self, p, root: Path) -> dict[str, str]:
        return {}

    def export(self, model_dir: Path, out_dir: Path, p, root: Path) -> Exported:
        """ONNX and TorchScript, with the PyTorch model's logits on PARITY_IMAGES real held-out images (preprocessed
        as predict does) for publishing to check both against. The exports take any H, W that are multiples of 32;
        `io` describes the square chip of the training size that ArcGIS and STAC clients send."""
        import torch

        from wildtrain.families.segmenter.data import Split
        from wildtrain.families.torch_export import export

        predictor = self.load(model_dir, "cpu")
        card = predictor.card
        split = Split(root / p.paths.coco / f"{p.segmenter_evaluate.split}.json", card.input.get("missing_masks", "boxes"))
        batch, _ = predictor.tensors([split.image(i) for i in range(min(PARITY_IMAGES, len(split)))])
        files = export(predictor.model, predictor.size, out_dir, spatial=True)
        with torch.inference_mode():
            logits = predictor.model.eval()(batch).float().numpy()
        io = ExportIO(size=predictor.size, resize="stretch", mean=tuple(card.input["mean"]), std=tuple(card.input["std"]),
                      output="segmentation", output_dims=("batch", "class", "height", "width"),
                      output_shape=(-1, len(card.class_names), predictor.size, predictor.size),
                      classes=tuple(card.class_names), input_name="images", output_name="logits")
        return Exported(files=files, io=io, reference=(batch.numpy(), logits),
                        total_parameters=int(sum(t.numel() for t in predictor.model.parameters())))


FAMILY = SegmenterFamily()
