"""The instance segmenter family: Ultralytics YOLO-seg, trained on polygons of the canonical masks, predicting one
outline per animal (boxes, classes, scores and polygons: contract.Instances).

It reuses the detector's Ultralytics plumbing (families.detector.yolo: model source, training callbacks, slim
checkpoint, offline AMP check); what differs is the label layout (polygons, written into its run folder from the
split files, so the detector's box layout and the default pipeline stay as they are), the outputs (masks traced to
polygons at the image's own resolution) and the scoring (COCOeval segm + bbox: evaluate.instances). Images are
predicted whole, letterboxed to the training size: no slicing (masks of overlapping windows do not merge as boxes
do)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from wildtrain.contract import Exported, ExportIO, Instances, ModelCard, Trained, TrainData, check_options
from wildtrain.errors import WildtrainError

WEIGHTS = "model.pt"
LAYOUT = "layout"  # the YOLO-seg layout, in the run folder (runs/yoloseg/layout)
PARITY_IMAGES = 4  # held-out images the exports are checked on
MASK_THRESHOLD = 0.5


class YoloSegPredictor:
    """A loaded YOLO-seg model: RGB arrays in, Instances out in each array's own pixels."""

    def __init__(self, card: ModelCard, model_dir: Path, device: str):
        from wildtrain.env import configure_ultralytics
        from wildtrain.families.detector.yolo import ultralytics_device

        configure_ultralytics()
        from ultralytics import YOLO

        self.card = card
        self.yolo = YOLO(str(model_dir / card.weights), task="segment")
        self.device = ultralytics_device(device).split(",")[0]
        self.size = int(card.input["size"])
        self.lock = threading.Lock()  # Ultralytics' predictor keeps per-call state: one call at a time

    def options(self) -> dict:
        return {"conf": 0.25, "iou": 0.7, "max_det": 300, "batch": 16}

    def predict(self, images: Sequence[np.ndarray], **options) -> list[Instances]:
        o = check_options(options, self.options(), "instance segmenter predict")
        conf, iou, max_det, batch = float(o["conf"]), float(o["iou"]), int(o["max_det"]), int(o["batch"])
        if max_det < 1 or max_det != float(o["max_det"]):
            raise WildtrainError(f"max_det: expected a whole number of instances per image (>= 1), got {o['max_det']}")
        if batch < 1:
            raise WildtrainError(f"batch: expected >= 1, got {o['batch']}")
        out: list[Instances] = []
        with self.lock:
            for start in range(0, len(images), batch):
                chunk = [np.ascontiguousarray(im[..., ::-1]) for im in images[start:start + batch]]  # Ultralytics: BGR
                results = self.yolo.predict(chunk, imgsz=self.size, conf=conf, iou=iou, max_det=max_det,
                                            retina_masks=True, device=self.device, verbose=False)
                out += [instances(r, max_det) for r in results]
        return out


def instances(result, max_det: int) -> Instances:
    """One Ultralytics Results -> Instances: boxes [x, y, w, h], and each mask (at the image's resolution, as
    retina_masks gives it) traced to polygons."""
    from wildtrain.data.masks import polygons

    xyxy = result.boxes.xyxy.cpu().numpy().astype(float)
    data = result.masks.data.cpu().numpy() if result.masks is not None else np.zeros((0, 1, 1))
    return Instances(boxes=[[x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in xyxy.tolist()],
                     classes=result.boxes.cls.cpu().numpy().astype(int).tolist(),
                     scores=result.boxes.conf.cpu().numpy().astype(float).tolist(),
                     capped=int(len(xyxy) >= max_det),
                     polygons=[polygons(m > MASK_THRESHOLD) for m in data])


def write_layout(data: TrainData, out_dir: Path) -> Path:
    """The YOLO-seg layout of the train and val split files (their untiled or tiled images, as convert wrote
    them); returns its dataset.yaml."""
    from wildtrain.data.coco import load_coco
    from wildtrain.data.yolo_layout import write_segment_layout
    from wildtrain.layout import image_root

    splits, roots = {}, {}
    for split in ("train", "val"):
        if not data.coco[split].is_file():
            raise WildtrainError(f"{data.coco[split]}: not found; the instance segmenter trains on convert's output "
                                 f"(dvc repro convert)")
        splits[split] = load_coco(data.coco[split])
        roots[split] = image_root(data.coco[split], splits[split].info)
    return write_segment_layout(splits, roots, out_dir)


class YoloSegFamily:
    name, task = "yoloseg", "instance-segmentation"
    train_section, evaluate_section, register_section = "yoloseg", "yoloseg_evaluate", "yoloseg_register"
    suffix = "_yoloseg"  # metrics/eval_yoloseg.json, metrics/register_yoloseg.json, metrics/train_yoloseg/
    requirements = ()  # served-model packages beyond the framework's (cv2, which traces the masks, comes with it)
    plot_files = ("yoloseg_pr_curve.png",)

    def model_dir(self, p, root: Path) -> Path:
        return root / p.paths.yoloseg

    def train(self, cfg, data: TrainData, workdir: Path, resume: bool, on_epoch) -> Trained:
        from wildtrain.env import configure_ultralytics
        from wildtrain.families.detector.yolo import fit, resolve_model_source, slim_checkpoint, train_args

        configure_ultralytics()
        from ultralytics import YOLO

        source = resolve_model_source(cfg.model, data.root)
        if source.endswith((".yaml", ".yml")) and "-seg" not in Path(source).stem:
            raise WildtrainError(f"yoloseg.model: '{cfg.model}' is not a segmentation model YAML (e.g. "
                                 f"yolo11n-seg.yaml, yolov8n-seg.yaml)")
        dataset_yaml = write_layout(data, workdir / LAYOUT)
        args = {**train_args(cfg, data, workdir), "data": str(dataset_yaml)}
        last = workdir / "weights" / "last.pt"
        resume = resume and last.is_file()
        model = YOLO(str(last) if resume else source, task="segment")
        reported = fit(model, args, last if resume else None, workdir, on_epoch)
        trainer = model.trainer
        best = Path(trainer.best) if Path(trainer.best).is_file() else Path(trainer.last)
        slim = workdir / WEIGHTS
        digest = slim_checkpoint(best, slim, cfg.imgsz, task="segment")
        return Trained(files={WEIGHTS: slim}, weights=WEIGHTS, architecture=Path(source).stem, framework="yolo",
                       input={"size": cfg.imgsz, "image_size": data.image_size, "channels": "RGB", "dtype": "uint8",
                              "resize": "letterbox (long side to size, padded with 114)", "slicing": "none"},
                       epochs_completed=max(reported, default=int(trainer.epoch)) + 1, resumed=resume,
                       tensors_sha256=digest,
                       extra={"best_fitness": float(trainer.best_fitness or 0.0), "category_ids": data.category_ids,
                              "labels": "YOLO-seg polygons of the split files' masks (RLE traced; no mask: the box)"})

    def load(self, model_dir: Path, device: str = "auto") -> YoloSegPredictor:
        return YoloSegPredictor(ModelCard.load(model_dir), model_dir, device)

    def table_type(self):
        from wildtrain.evaluate.instances import InstanceTable

        return InstanceTable

    def evaluate(self, predictor: YoloSegPredictor, p, root: Path, write_outputs: bool) -> tuple:
        from wildtrain.evaluate.instances import evaluate_instances

        return evaluate_instances(predictor, p, root, write_outputs, self.suffix)

    def lineage(self, p, root: Path) -> dict[str, str]:
        return {}

    def export(self, model_dir: Path, out_dir: Path, p, root: Path) -> Exported:
        """ONNX (dynamic batch) and TorchScript through Ultralytics' exporter: output0 [N, 4 + classes + 32,
        anchors] (boxes, class scores, mask coefficients) and output1 the mask prototypes. The reference is the
        fused PyTorch model's output0 on held-out images letterboxed to the training size."""
        return export(model_dir, out_dir, parity_images(p, root))


def parity_images(p, root: Path) -> list[np.ndarray]:
    from wildtrain.data.images import load_rgb
    from wildtrain.evaluate.instances import split_file
    from wildtrain.layout import image_root

    coco_file, ds = split_file(p, root)
    if not ds.images:
        raise WildtrainError(f"{coco_file}: no images to check the exports on")
    folder = image_root(coco_file, ds.info)
    return [load_rgb(folder / im["file_name"]) for im in ds.images[:PARITY_IMAGES]]


def export(model_dir: Path, out_dir: Path, images: Sequence[np.ndarray]) -> Exported:
    """The detector's Ultralytics export path (yolo.ultralytics_export) with the segment head: output0 carries
    boxes, class scores and 32 mask coefficients per anchor."""
    from wildtrain.families.detector.yolo import ultralytics_export

    card = ModelCard.load(model_dir)
    size = int(card.input["size"])
    files, x, ref, total = ultralytics_export(model_dir / card.weights, out_dir, size, "segment", images)
    io = ExportIO(size=size, resize="letterbox", mean=None, std=None, output="yolo-seg",
                  output_dims=("batch", "box_class_scores_and_mask_coefficients", "anchor"),
                  output_shape=(-1, int(ref.shape[1]), -1), classes=tuple(card.class_names),
                  input_name="images", output_name="output0")
    return Exported(files=files, io=io, reference=(x, ref), total_parameters=total,
                    unavailable={"dlpk": "no ArcGIS inference function for instance segmentation"})


FAMILY = YoloSegFamily()
