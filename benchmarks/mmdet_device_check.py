"""Check the detector family's MMDetection framework and the mmcv ops stand-in on a GPU.

First the kernels mmcv calls only on CUDA (deformable attention, focal loss), NMS and RoIAlign, against
mmcv's/mmdet's PyTorch code or the CPU; then each named model trains through the train stage (AMP on CUDA)
and its model folder predicts on the device and on the CPU.

    python benchmarks/mmdet_device_check.py retinanet_r18 rtmdet_tiny faster_rcnn_r50 deformable_detr dino
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from wildtrain.families.detector.mmdet import setup  # noqa: E402


def check_kernels(device: str) -> None:
    from mmcv.ops import nms, roi_align, sigmoid_focal_loss
    from mmcv.ops.multi_scale_deform_attn import MultiScaleDeformableAttnFunction, multi_scale_deformable_attn_pytorch
    from mmdet.models.losses.focal_loss import py_sigmoid_focal_loss

    g = torch.Generator(device=device).manual_seed(0)
    value = torch.rand(2, 45, 2, 4, dtype=torch.float64, device=device, generator=g, requires_grad=True)
    loc = torch.rand(2, 5, 2, 2, 3, 2, dtype=torch.float64, device=device, generator=g, requires_grad=True)
    attn = torch.rand(2, 5, 2, 2, 3, dtype=torch.float64, device=device, generator=g).softmax(-1).requires_grad_(True)
    shapes, start = torch.tensor([[6, 6], [3, 3]], device=device), torch.tensor([0, 36], device=device)
    out = MultiScaleDeformableAttnFunction.apply(value, shapes, start, loc, attn, 64)
    ref = multi_scale_deformable_attn_pytorch(value, shapes, loc, attn)
    grads = torch.autograd.grad(out.sum(), (value, loc, attn))
    ref_grads = torch.autograd.grad(ref.sum(), (value, loc, attn))
    print("deformable attention: max diff", (out - ref).abs().max().item(),
          "grads", max((a - b).abs().max().item() for a, b in zip(grads, ref_grads)))

    logits = torch.randn(7, 3, dtype=torch.float64, device=device, requires_grad=True)
    target = torch.tensor([0, 2, 3, 1, 3, 0, 2], device=device)
    loss = sigmoid_focal_loss(logits, target, 2.0, 0.25, None, "sum")
    ref = py_sigmoid_focal_loss(logits, torch.nn.functional.one_hot(target, 4)[:, :3].double(), None, 2.0, 0.25, "sum")
    grad_diff = (torch.autograd.grad(loss, logits)[0] - torch.autograd.grad(ref, logits)[0]).abs().max().item()
    print("focal loss: diff", (loss - ref).abs().item(), "grads", grad_diff)

    boxes = torch.rand(300, 4, device=device) * 100
    boxes[:, 2:] += boxes[:, :2] + 1
    scores = torch.rand(300, device=device)
    print("nms device == cpu:", torch.equal(nms(boxes, scores, 0.5)[1].cpu(), nms(boxes.cpu(), scores.cpu(), 0.5)[1]))

    x = torch.rand(2, 8, 20, 20, device=device, requires_grad=True)
    rois = torch.tensor([[0, 1.3, 2.2, 15.1, 17.7], [1, 0, 0.5, 19.5, 11.0]], device=device)
    y = roi_align(x, rois, (7, 7), 0.5, 2, "avg", True)
    (gx,) = torch.autograd.grad(y.sum(), x)
    xc = x.detach().cpu().requires_grad_(True)
    yc = roi_align(xc, rois.cpu(), (7, 7), 0.5, 2, "avg", True)
    (gc,) = torch.autograd.grad(yc.sum(), xc)
    print("roi_align device vs cpu: max diff", (y.cpu() - yc).abs().max().item(), "grads",
          (gx.cpu() - gc).abs().max().item(), flush=True)


def check_models(models: list[str], device: str, images: int, imgsz: int, epochs: int) -> None:
    """Each model through the train stage (AMP on CUDA), then its model folder loaded on the device and on the CPU
through the model folder the stage writes."""
    from wildtrain import env, families
    from wildtrain.data.coco import load_coco
    from wildtrain.data.images import load_rgb
    from wildtrain.layout import image_root
    from wildtrain.params import Mmdet, Params, _build
    from wildtrain.pipeline.convert import convert
    from wildtrain.pipeline.prepare import prepare
    from wildtrain.pipeline.train import train

    root = Path(tempfile.mkdtemp(prefix="wildtrain-device-"))
    (root / "dvc.yaml").write_text("stages: {}\n")
    os.chdir(root)
    env.configure(root)
    p = _build(Params, {"data": {"synthetic": {"num_images": images, "image_size": imgsz}},
                        "convert": {"crops": {"enabled": False}}}, "", "device check")
    prepare(p, root)
    convert(p, root)
    test = load_coco(root / p.paths.coco / "test.json")
    arrays = [load_rgb(image_root(root / p.paths.coco / "test.json", test.info) / im["file_name"])
              for im in test.images]
    for model in models:
        cfg = dataclasses.replace(p.train, framework="mmdet", epochs=epochs, imgsz=imgsz, batch=8, workers=2,
                                  device=device, amp=True, resume="never", mmdet=Mmdet(model=model))
        epochs_seen = []
        t0 = time.time()
        card = train(dataclasses.replace(p, train=cfg), root, on_epoch=lambda e, m: epochs_seen.append(m))
        seconds = time.time() - t0
        kw = dict(conf=0.05, iou=0.5, max_det=100, batch=8, slice="off")
        on_device = families.load(root / p.paths.models, device).predict(arrays, **kw)
        on_cpu = families.load(root / p.paths.models, "cpu").predict(arrays, **kw)
        iters = card["extra"]["iterations"]
        first, last = epochs_seen[0], epochs_seen[-1]
        print(f"{model}: {iters} iterations in {seconds:.1f} s ({seconds / iters:.3f} s/iter incl. set-up and val), "
              f"loss {first['train/loss']:.3f} -> {last['train/loss']:.3f}, val mAP50 {last['val/mAP50']:.3f}; "
              f"boxes on {device} {sum(len(d.boxes) for d in on_device)}, on cpu {sum(len(d.boxes) for d in on_cpu)}",
              flush=True)
    os.chdir(tempfile.gettempdir())
    shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*", default=["retinanet_r18"])
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--epochs", type=int, default=3)
    a = ap.parse_args()
    setup()
    print("torch", torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA")
    check_kernels(a.device.split(":")[0] if a.device.startswith("cuda") else a.device)
    check_models(a.models, a.device, a.images, a.imgsz, a.epochs)


if __name__ == "__main__":
    main()
