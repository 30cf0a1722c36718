"""MMDetection as a detector framework: mmdet's packaged configs + our params, trained by mmengine's Runner.

The config is mmdet's own (architecture, losses, optimizer) with our classes, image size, epochs, batch,
seed and device; data comes straight from the canonical COCO files (no image copies); pretrained URLs
are removed (nothing is downloaded) unless `train.mmdet.weights` names a local checkpoint. Without
compiled mmcv, `mmcv_ext` stands in for its kernels (docs/how-to/mmdetection.md).

The checkpoint this adapter hands back holds only tensors, dicts, strings and lists (weights, the full
config, class order), so it loads with `torch.load(weights_only=True)`. mmengine's own checkpoints (for
resume) are written with plain lists in place of its pickled objects, so they load safely too.
"""

from __future__ import annotations

import contextlib
import math
import uuid
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from wildtrain.devices import resolve_device
from wildtrain.errors import WildtrainError
from wildtrain.contract import (Detections, EpochCallback, Exported, ModelCard, Trained, TrainData,
                                    tensors_sha256)

# name -> config under mmdet's packaged configs (mmdet/.mim/configs)
MODELS = {
    "retinanet_r18": "retinanet/retinanet_r18_fpn_1x_coco.py",
    "retinanet_r50": "retinanet/retinanet_r50_fpn_1x_coco.py",
    "faster_rcnn_r50": "faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py",
    "rtmdet_tiny": "rtmdet/rtmdet_tiny_8xb32-300e_coco.py",
    "deformable_detr": "deformable_detr/deformable-detr_r50_16xb2-50e_coco.py",
    "dino": "dino/dino-4scale_r50_8xb2-12e_coco.py",
}
OPTIMIZERS = ("SGD", "Adam", "AdamW")
# mmcv modules whose kernels are not in the stand-in, or have no CPU kernel at all (CARAFE)
OP_MODULES = {"CARAFE": "carafe_forward", "CARAFEPack": "carafe_forward", "DeformConv2d": "deform_conv_forward",
              "DeformConv2dPack": "deform_conv_forward", "ModulatedDeformConv2d": "modulated_deform_conv_forward",
              "ModulatedDeformConv2dPack": "modulated_deform_conv_forward", "MaskedConv2d": "masked_im2col_forward",
              "DeformRoIPool": "deform_roi_pool_forward", "DeformRoIPoolPack": "deform_roi_pool_forward",
              "ModulatedDeformRoIPoolPack": "deform_roi_pool_forward", "CornerPool": "corner_pool"}
CPU_LESS = {"CARAFE", "CARAFEPack"}
VAL_METRICS = {"coco/bbox_mAP": "val/mAP50-95", "coco/bbox_mAP_50": "val/mAP50", "coco/bbox_mAP_75": "val/mAP75"}
MODEL_FILE = "model.pt"
HISTORY_KEY = "__mmengine_history_buffer__"


def setup() -> None:
    """Import mmdet with the ops stand-in in place (unless compiled mmcv is installed) and its registries."""
    from wildtrain.families.detector import mmcv_ext

    mmcv_ext.install()
    try:
        from mmdet.utils import register_all_modules
    except ImportError as e:
        raise WildtrainError(f"train.framework: mmdet needs mmdet, mmengine and mmcv-lite installed "
                             f"(make setup; requirements.txt) ({e})") from None
    register_all_modules(init_default_scope=True)


def config_file(model: str, root: Path) -> Path:
    """A model name from MODELS, or a user's own mmdet config file."""
    if model.endswith(".py"):
        path = Path(model) if Path(model).is_absolute() else root / model
        if not path.is_file():
            raise WildtrainError(f"train.mmdet.model: config file '{model}' not found")
        return path
    if model not in MODELS:
        raise WildtrainError(f"train.mmdet.model: unknown model '{model}' (available: {', '.join(MODELS)}, "
                             f"or a path to your own mmdet config .py)")
    import mmdet

    return Path(mmdet.__file__).parent / ".mim" / "configs" / MODELS[model]


def _walk(node, fn) -> None:
    """Apply fn to every dict inside a config tree (dicts and lists)."""
    if isinstance(node, dict):
        fn(node)
        for v in node.values():
            _walk(v, fn)
    elif isinstance(node, (list, tuple)):
        for v in node:
            _walk(v, fn)


def _from_scratch(d: dict) -> None:
    """Drop pretrained init (URLs) and unfreeze what the config froze because it expected pretrained weights."""
    init = d.get("init_cfg")
    if isinstance(init, dict) and init.get("type") == "Pretrained":
        d["init_cfg"] = None
    if "frozen_stages" in d:
        d["frozen_stages"] = -1
    if d.get("norm_eval") is True:
        d["norm_eval"] = False
    if d.get("type") == "BN" and d.get("requires_grad") is False:
        d["requires_grad"] = True


def _set_num_classes(n: int):
    def fn(d: dict) -> None:
        if "num_classes" in d:
            d["num_classes"] = n

    return fn


def dataset_cfg(coco_file: Path, image_root: Path, classes: list[str], pipeline: list, train: bool) -> dict:
    return dict(type="CocoDataset", data_root="", ann_file=str(coco_file.resolve()),
                data_prefix=dict(img=str(image_root.resolve()) + "/"), metainfo=dict(classes=tuple(classes)),
                filter_cfg=dict(filter_empty_gt=False, min_size=0), test_mode=not train, pipeline=pipeline,
                backend_args=None)


def test_pipeline(imgsz: int, with_annotations: bool = True, from_arrays: bool = False) -> list:
    load = dict(type="mmdet.LoadImageFromNDArray") if from_arrays else dict(type="LoadImageFromFile", backend_args=None)
    steps = [load,
             dict(type="Resize", scale=(imgsz, imgsz), keep_ratio=True)]
    if with_annotations:
        steps.append(dict(type="LoadAnnotations", with_bbox=True))
    steps.append(dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape",
                                                        "scale_factor")))
    return steps


def json_class_order(coco_file: Path) -> list[str]:
    """mmdet numbers labels in the order categories appear in the file, not by id."""
    from wildtrain.data.coco import load_coco

    ds = load_coco(coco_file)
    return [c["name"] for c in ds.categories]


def build_config(cfg, data: TrainData, workdir: Path, root: Path, device: str):
    """mmdet's config for `cfg.mmdet.model` with our data, classes, schedule, seed and device."""
    from mmengine.config import Config

    m = cfg.mmdet
    c = Config.fromfile(str(config_file(m.model, root)))
    classes = json_class_order(data.coco["train"])
    _walk(c.model, _set_num_classes(len(classes)))
    weights = ""
    if m.weights:
        path = Path(m.weights) if Path(m.weights).is_absolute() else root / m.weights
        if not path.is_file():
            raise WildtrainError(f"train.mmdet.weights: checkpoint '{m.weights}' not found (nothing is downloaded)")
        weights = str(path)
    if not weights:
        _walk(c.model, _from_scratch)
    _check_queries(c.model, cfg.imgsz, m.model)
    c.load_from = weights or None
    c.resume = False
    c.work_dir = str(workdir)

    train_pipeline = [dict(type="LoadImageFromFile", backend_args=None),
                      dict(type="LoadAnnotations", with_bbox=True),
                      dict(type="Resize", scale=(cfg.imgsz, cfg.imgsz), keep_ratio=True),
                      dict(type="RandomFlip", prob=cfg.fliplr),
                      dict(type="PackDetInputs")]
    loader = dict(batch_size=cfg.batch, num_workers=cfg.workers, persistent_workers=cfg.workers > 0)
    c.train_dataloader = dict(**loader, sampler=dict(type="DefaultSampler", shuffle=True),
                              dataset=dataset_cfg(data.coco["train"], data.image_root, classes, train_pipeline, True))
    c.val_dataloader = dict(**loader, drop_last=False, sampler=dict(type="DefaultSampler", shuffle=False),
                            dataset=dataset_cfg(data.coco["val"], data.image_root, classes,
                                                test_pipeline(cfg.imgsz), False))
    c.test_dataloader = c.val_dataloader
    c.val_evaluator = dict(type="CocoMetric", ann_file=str(data.coco["val"].resolve()), metric="bbox",
                           format_only=False, backend_args=None)
    c.test_evaluator = c.val_evaluator
    c.train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=cfg.epochs, val_interval=1)
    c.val_cfg, c.test_cfg = dict(type="ValLoop"), dict(type="TestLoop")
    # rtmdet switches to a second pipeline near its 300th epoch; our pipeline is the same throughout.
    c.custom_hooks = [h for h in c.get("custom_hooks", []) if h.get("type") != "PipelineSwitchHook"]

    optim = dict(c.optim_wrapper)
    if m.optimizer != "auto":
        if m.optimizer not in OPTIMIZERS:
            raise WildtrainError(f"train.mmdet.optimizer: expected auto or one of {', '.join(OPTIMIZERS)}, "
                                 f"got '{m.optimizer}'")
        opt = dict(type=m.optimizer, lr=m.lr or cfg.lr0, weight_decay=cfg.weight_decay)
        if m.optimizer == "SGD":
            opt["momentum"] = cfg.momentum
        optim["optimizer"] = opt
    elif m.lr:
        optim["optimizer"] = {**optim["optimizer"], "lr": m.lr}
    optim["type"] = "AmpOptimWrapper" if cfg.amp and device.startswith("cuda") else "OptimWrapper"
    if optim["type"] == "OptimWrapper":
        optim.pop("loss_scale", None)
    c.optim_wrapper = optim
    scale = c.get("auto_scale_lr") or {}
    c.auto_scale_lr = dict(enable=not m.lr and "base_batch_size" in scale,
                           base_batch_size=scale.get("base_batch_size", cfg.batch))

    iters_per_epoch = max(1, math.ceil(_count_images(data.coco["train"]) / cfg.batch))
    warmup = int(round(cfg.warmup_epochs * iters_per_epoch))
    decay = (dict(type="CosineAnnealingLR", eta_min_ratio=cfg.lrf, T_max=cfg.epochs) if cfg.cos_lr
             else dict(type="LinearLR", start_factor=1.0, end_factor=cfg.lrf, end=cfg.epochs))
    c.param_scheduler = ([dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=warmup)]
                         if warmup > 0 else []) + [dict(**decay, by_epoch=True, begin=0)]

    c.default_hooks = dict(
        timer=dict(type="IterTimerHook"), param_scheduler=dict(type="ParamSchedulerHook"),
        logger=dict(type="LoggerHook", interval=50), sampler_seed=dict(type="DistSamplerSeedHook"),
        checkpoint=dict(type="CheckpointHook", interval=1, max_keep_ckpts=1, save_best="coco/bbox_mAP",
                        rule="greater"),
        visualization=dict(type="DetVisualizationHook"))
    # mmengine keeps one visualizer per name for the whole process; a fixed name would reuse a deleted run's folder
    c.visualizer = {**c.get("visualizer", dict(type="DetLocalVisualizer", vis_backends=[dict(type="LocalVisBackend")])),
                    "name": f"wildtrain-{uuid.uuid4().hex}"}
    c.randomness = dict(seed=cfg.seed, deterministic=False)  # deterministic: set warn-only by the adapter
    c.log_level = "WARNING"
    c.launcher = "none"
    return c


def _check_queries(model: dict, imgsz: int, name: str) -> None:
    """Two-stage DETRs (DINO) pick num_queries encoder tokens; a small image has fewer, and topk fails mid-run."""
    if not (model.get("as_two_stage") or model.get("type") == "DINO"):
        return
    levels = model.get("num_feature_levels", 4)
    tokens = sum(math.ceil(imgsz / (8 * 2 ** i)) ** 2 for i in range(levels))
    if tokens < model.get("num_queries", 0):
        need = next(s for s in range(32, 4096, 32)
                    if sum(math.ceil(s / (8 * 2 ** i)) ** 2 for i in range(levels)) >= model["num_queries"])
        raise WildtrainError(f"train.imgsz: {imgsz} is too small for {name} ({model['num_queries']} queries need "
                             f"{model['num_queries']} encoder tokens; use imgsz >= {need})")


def _count_images(coco_file: Path) -> int:
    from wildtrain.io import read_json

    return len(read_json(coco_file, "COCO annotation file")["images"])


def mmdet_device(device: str) -> str:
    d = resolve_device(device)
    if "," in d:
        raise WildtrainError(f"train.device: multi-GPU training is not wired for mmdet ('{device}'); "
                             f"use one device, e.g. cuda:0, or mmdet's tools/dist_train.sh")
    return d


def check_ops(model, device: str) -> None:
    """Refuse, before training, a model that uses an mmcv op this install or device cannot run."""
    from wildtrain.families.detector import mmcv_ext

    standin = not mmcv_ext.compiled_mmcv()
    for module in model.modules():
        name = type(module).__name__
        if name not in OP_MODULES:
            continue
        if name in CPU_LESS and device == "cpu":
            raise WildtrainError(f"train.mmdet.model: uses mmcv {name}, which has no CPU implementation; "
                                 f"train it on a CUDA device with compiled mmcv")
        if standin and OP_MODULES[name] not in mmcv_ext.IMPLEMENTED:
            raise WildtrainError(f"train.mmdet.model: uses mmcv {name}, which needs compiled mmcv (not the "
                                 f"pure-PyTorch stand-in); see docs/how-to/mmdetection.md")


def to_plain(obj):
    """mmengine's HistoryBuffers and numpy values -> lists and numbers (what torch's safe loader accepts)."""
    import numpy as np
    from mmengine.logging import HistoryBuffer

    if isinstance(obj, HistoryBuffer):
        logs, counts = obj.data
        return {HISTORY_KEY: [logs.tolist(), counts.tolist(), obj.max_length]}
    if isinstance(obj, dict):
        return type(obj)((k, to_plain(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v) for v in obj)
    if isinstance(obj, (np.ndarray, np.generic)):
        return obj.tolist()
    return obj


def from_plain(obj):
    from mmengine.logging import HistoryBuffer

    if isinstance(obj, dict):
        if set(obj) == {HISTORY_KEY}:
            logs, counts, max_length = obj[HISTORY_KEY]
            return HistoryBuffer(logs, counts, max_length)
        return type(obj)((k, from_plain(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(from_plain(v) for v in obj)
    return obj


def _plain_checkpoints():
    from mmengine.hooks import Hook

    class PlainCheckpoints(Hook):
        """mmengine checkpoints pickle HistoryBuffers (whose pickle calls builtins.getattr) and numpy scalars,
        which torch >= 2.6 refuses to load safely. We store them as plain lists and rebuild them on resume,
        so every checkpoint this pipeline writes loads with weights_only=True and nothing allowlisted."""

        priority = "VERY_LOW"

        def before_save_checkpoint(self, runner, checkpoint):
            for key in [k for k in checkpoint if k not in ("state_dict", "ema_state_dict", "optimizer")]:
                checkpoint[key] = to_plain(checkpoint[key])

        def after_load_checkpoint(self, runner, checkpoint):
            for key in [k for k in checkpoint if k not in ("state_dict", "ema_state_dict", "optimizer")]:
                checkpoint[key] = from_plain(checkpoint[key])

    return PlainCheckpoints()


@contextlib.contextmanager
def safe_loading(what: str) -> Iterator[None]:
    """torch's safe loader (weights_only) with numpy arrays allowed; one clear line if a file needs more."""
    import pickle

    import numpy as np
    import torch

    allowed = [np.ndarray, np.dtype, np._core.multiarray._reconstruct, np._core.multiarray.scalar,
               *(type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool"))]
    try:
        with torch.serialization.safe_globals(allowed):
            yield
    except pickle.UnpicklingError as e:
        detail = str(e).split("WeightsUnpickler error:")[-1].strip().splitlines()[0]
        raise WildtrainError(f"{what}: refused by torch's safe loader ({detail}); save only its state_dict "
                             f"(torch.save({{'state_dict': model.state_dict()}}, path)) and use that") from None


def _latest_checkpoint(workdir: Path) -> Path | None:
    marker = workdir / "last_checkpoint"
    if not marker.is_file():
        return None
    path = Path(marker.read_text().strip())
    return path if path.is_file() else None


def _epoch_reporter(on_epoch: EpochCallback):
    from mmengine.hooks import Hook

    class EpochReporter(Hook):
        """Mean training losses per epoch + the val COCO mAP, through the pipeline's on_epoch callback."""

        priority = "LOW"

        def __init__(self):
            self.sums: dict[str, float] = {}
            self.iters = 0
            self.pending: dict[str, float] | None = None
            self.reported: set[int] = set()

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            for k, v in (outputs or {}).items():
                if "loss" in k:
                    self.sums[k] = self.sums.get(k, 0.0) + float(v.detach() if hasattr(v, "detach") else v)
            self.iters += 1

        def after_train_epoch(self, runner):
            self.pending = {f"train/{k}": v / max(1, self.iters) for k, v in self.sums.items()}
            lrs = runner.optim_wrapper.get_lr().get("lr") or []
            if lrs:
                self.pending["lr/pg0"] = float(lrs[0])
            self.sums, self.iters = {}, 0

        def after_val_epoch(self, runner, metrics=None):
            if self.pending is None:
                return
            out = dict(self.pending)
            # CocoMetric returns nothing when the model predicted no box at all: that is an mAP of 0
            out.update({name: float((metrics or {}).get(k, 0.0)) for k, name in VAL_METRICS.items()})
            self.pending = None
            self.reported.add(runner.epoch - 1)
            on_epoch(runner.epoch - 1, out)

    return EpochReporter()


def _runner_class(device: str):
    from mmengine.runner import Runner

    class DeviceRunner(Runner):
        """mmengine puts the model on the first GPU whenever one exists; we honour train.device."""

        def wrap_model(self, model_wrapper_cfg, model):
            return model.to(device)

    return DeviceRunner


def slim_checkpoint(src: Path, dst: Path, config: dict, classes: list[str], class_names: list[str]) -> str:
    """Weights (EMA ones where the config keeps an EMA) + config + class order: tensors, dicts, strings only."""
    import torch

    from wildtrain.io import write_torch

    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    state = {k: v for k, v in ckpt["state_dict"].items()}
    write_torch(dst, {"state_dict": state, "config": config, "classes": list(classes),
                      "label_to_class": [class_names.index(n) for n in classes]})
    return tensors_sha256(state)


def train(cfg, data: TrainData, workdir: Path, resume: bool, on_epoch: EpochCallback) -> Trained:
    import torch

    setup()
    device = mmdet_device(cfg.device)
    c = build_config(cfg, data, workdir, data.root, device)
    resume = resume and _latest_checkpoint(workdir) is not None
    c.resume = resume
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    runner = _runner_class(device).from_cfg(c)
    check_ops(runner.model, device)
    runner.register_hook(_epoch_reporter(on_epoch))
    runner.register_hook(_plain_checkpoints())
    if resume:
        print(f"train: resuming from {_latest_checkpoint(workdir)}")
    with safe_loading(f"train.mmdet.weights '{cfg.mmdet.weights}'" if cfg.mmdet.weights else str(workdir)):
        runner.train()
    best = sorted(workdir.glob("best_coco_bbox_mAP_epoch_*.pth"))
    source = best[-1] if best else _latest_checkpoint(workdir)
    if source is None:
        raise WildtrainError(f"{workdir}: mmengine wrote no checkpoint")
    out = workdir / MODEL_FILE
    digest = slim_checkpoint(source, out, c.to_dict(), json_class_order(data.coco["train"]), data.class_names)
    return Trained(files={MODEL_FILE: out}, weights=MODEL_FILE, architecture=Path(cfg.mmdet.model).stem,
                   framework="mmdet", input={"size": cfg.imgsz}, epochs_completed=int(runner.train_loop.epoch),
                   resumed=resume, extra={"mmdet_model": cfg.mmdet.model, "mmdet_checkpoint": source.name,
                                          "iterations": int(runner.iter)}, tensors_sha256=digest)


class MmdetNet:
    """A loaded mmdet detector: arrays in, boxes out in each array's own pixels (resized to `size`, ratio kept)."""

    def __init__(self, model_dir: Path, card: ModelCard, device: str):
        import torch
        from mmcv.transforms import Compose
        from mmengine.config import Config

        setup()
        self.device = mmdet_device(device)
        ckpt = torch.load(model_dir / card.weights, map_location="cpu", weights_only=True)
        self.config = Config(ckpt["config"])
        self.to_class = ckpt["label_to_class"]
        self.state = ckpt["state_dict"]
        self.pipeline = Compose(test_pipeline(int(card.input["size"]), with_annotations=False, from_arrays=True))
        self.model, self.thresholds = None, None

    def _model(self, conf: float, iou: float, max_det: int):
        """mmdet bakes thresholds into the model's test config: rebuild only when they change."""
        if self.thresholds != (conf, iou, max_det):
            from mmdet.registry import MODELS as REGISTRY

            test_cfg = self.config.model.get("test_cfg")
            final = test_cfg.get("rcnn", test_cfg) if test_cfg is not None else {}  # two-stage: not the RPN's
            for key, value in (("score_thr", conf), ("max_per_img", max_det)):
                if key in final:
                    final[key] = value
            if isinstance(final.get("nms"), dict):
                final["nms"]["iou_threshold"] = iou
            model = REGISTRY.build(self.config.model)
            model.load_state_dict(self.state)
            self.model, self.thresholds = model.to(self.device).eval(), (conf, iou, max_det)
        return self.model

    def predict(self, images: Sequence[np.ndarray], *, conf: float, iou: float, max_det: int) -> list[Detections]:
        import torch
        from mmengine.dataset import pseudo_collate

        model = self._model(conf, iou, max_det)
        batch = [self.pipeline(dict(img=np.ascontiguousarray(im[..., ::-1]), img_id=i))  # mmcv works in BGR
                 for i, im in enumerate(images)]
        out: list[Detections] = []
        with torch.no_grad():
            for sample in model.test_step(pseudo_collate(batch)) if batch else []:
                pred = sample.pred_instances
                keep = pred.scores >= conf
                order = pred.scores[keep].argsort(descending=True)[:max_det].cpu().numpy()
                xyxy = pred.bboxes[keep].float().cpu().numpy().astype(float)[order]
                labels = pred.labels[keep].cpu().numpy()[order]
                out.append(Detections(boxes=[[x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in xyxy.tolist()],
                                      classes=[self.to_class[int(k)] for k in labels],
                                      scores=pred.scores[keep].float().cpu().numpy()[order].astype(float).tolist()))
        return out


NET = MmdetNet



def export(model_dir: Path, card: ModelCard, out_dir: Path, images: Sequence[np.ndarray]) -> Exported:
    """ONNX and TorchScript of the network and its box decoding, NMS outside (mmdet_onnx: anchor-based
    single-stage heads such as RetinaNet); other heads export only through mmdeploy, which needs compiled mmcv ops,
    and the reason goes into the STAC item and the model card. The config is published beside them either way."""
    import torch
    from mmengine.config import Config

    from wildtrain.families.detector import mmdet_onnx
    from wildtrain.io import write_text

    setup()
    from mmdet.registry import MODELS as REGISTRY

    out_dir.mkdir(parents=True, exist_ok=True)
    config = out_dir / "mmdet_config.py"
    ckpt = torch.load(model_dir / card.weights, map_location="cpu", weights_only=True)
    cfg = Config(ckpt["config"])
    write_text(config, cfg.pretty_text)
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    total = sum(v.numel() for k, v in ckpt["state_dict"].items() if not k.endswith(buffers))
    model = REGISTRY.build(cfg.model)
    model.load_state_dict(ckpt["state_dict"])
    why = mmdet_onnx.unsupported(model)
    if why is not None:
        return Exported(files={"mmdet_config": config}, total_parameters=int(total),
                        unavailable={"onnx": why, "torchscript": why})
    files, io, reference = mmdet_onnx.export(model, cfg, int(card.input["size"]), ckpt["label_to_class"],
                                             card.class_names, out_dir, images)
    return Exported(files={**files, "mmdet_config": config}, io=io, reference=reference, total_parameters=int(total))
