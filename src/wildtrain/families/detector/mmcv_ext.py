"""A pure-PyTorch stand-in for mmcv's compiled `mmcv._ext`, used only by the MMDetection adapter.

PyPI has no mmcv wheel, only the pure-Python `mmcv-lite`; mmdet imports `mmcv.ops` everywhere, and that
loads `mmcv._ext`. This module provides the kernels the detectors we offer call, with torchvision
(CPU and CUDA kernels) or plain torch, under mmcv's names and argument conventions. Any other kernel
resolves to a function that raises one clear line (install compiled mmcv: docs/how-to/mmdetection.md).
`install()` registers it as `mmcv._ext` only when no compiled mmcv is present.
"""

from __future__ import annotations

import importlib
import sys

import torch
import torchvision

from wildtrain.errors import WildtrainError

IMPLEMENTED = ("nms", "sigmoid_focal_loss_forward", "sigmoid_focal_loss_backward", "roi_align_forward", "roi_align_backward", "roi_pool_forward", "roi_pool_backward",
               "ms_deform_attn_forward", "ms_deform_attn_backward")


def nms(boxes, scores, iou_threshold: float, offset: int = 0):
    """Indices kept, by decreasing score (mmcv's order). offset=1 is mmcv's legacy +1 pixel box width."""
    if offset:
        boxes = torch.cat([boxes[:, :2], boxes[:, 2:4] + offset], dim=1)
    return torchvision.ops.nms(boxes.float(), scores.float(), float(iou_threshold))


def _focal(input, target, weight, gamma: float, alpha: float):
    """Elementwise sigmoid focal loss with class-index targets (index == num_classes: background)."""
    num_classes = input.size(1)
    t = torch.nn.functional.one_hot(target, num_classes + 1)[:, :num_classes].to(input.dtype)
    p = input.sigmoid()
    ce = torch.nn.functional.binary_cross_entropy_with_logits(input, t, reduction="none")
    loss = ce * (1 - (p * t + (1 - p) * (1 - t))).pow(gamma) * (alpha * t + (1 - alpha) * (1 - t))
    if weight.numel():
        loss = loss * weight[target.clamp(max=num_classes - 1)].unsqueeze(1)
    return loss


def sigmoid_focal_loss_forward(input, target, weight, output, *, gamma, alpha):
    """mmdet's FocalLoss calls this kernel only on CUDA (on CPU it uses its own PyTorch version)."""
    output.copy_(_focal(input, target, weight, gamma, alpha))


def sigmoid_focal_loss_backward(input, target, weight, grad_input, *, gamma, alpha):
    x = input.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(_focal(x, target, weight, gamma, alpha).sum(), x)
    grad_input.copy_(grad)


def roi_align_forward(input, rois, output, argmax_y, argmax_x, *, aligned_height, aligned_width, spatial_scale,
                      sampling_ratio, pool_mode, aligned):
    """mmcv's average RoIAlign is the same algorithm as torchvision's (both from Detectron2)."""
    if pool_mode != 1:
        raise WildtrainError("mmcv RoIAlign pool_mode='max' is not in the pure-PyTorch stand-in; use 'avg' "
                             "or compiled mmcv (docs/how-to/mmdetection.md)")
    output.copy_(torch.ops.torchvision.roi_align(input, rois.to(input.dtype), spatial_scale, aligned_height,
                                                 aligned_width, sampling_ratio, aligned))


def roi_align_backward(grad_output, rois, argmax_y, argmax_x, grad_input, *, aligned_height, aligned_width,
                       spatial_scale, sampling_ratio, pool_mode, aligned):
    b, c, h, w = grad_input.shape
    grad_input.copy_(torch.ops.torchvision._roi_align_backward(
        grad_output, rois.to(grad_output.dtype), spatial_scale, aligned_height, aligned_width, b, c, h, w,
        sampling_ratio, aligned))


def roi_pool_forward(input, rois, output, argmax, *, pooled_height, pooled_width, spatial_scale):
    out, arg = torch.ops.torchvision.roi_pool(input, rois.to(input.dtype), spatial_scale, pooled_height,
                                              pooled_width)
    output.copy_(out)
    argmax.copy_(arg)


def roi_pool_backward(grad_output, rois, argmax, grad_input, *, pooled_height, pooled_width, spatial_scale):
    b, c, h, w = grad_input.shape
    grad_input.copy_(torch.ops.torchvision._roi_pool_backward(
        grad_output, rois.to(grad_output.dtype), argmax.long(), spatial_scale, pooled_height, pooled_width,
        b, c, h, w))


def _ms_deform_attn(value, spatial_shapes, sampling_locations, attention_weights):
    from mmcv.ops.multi_scale_deform_attn import multi_scale_deformable_attn_pytorch

    return multi_scale_deformable_attn_pytorch(value, spatial_shapes, sampling_locations, attention_weights)


def ms_deform_attn_forward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, *,
                           im2col_step):
    """mmcv calls the kernel on CUDA; its own pure-PyTorch version (grid_sample) computes the same thing."""
    return _ms_deform_attn(value, spatial_shapes, sampling_locations, attention_weights)


def ms_deform_attn_backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
                            grad_output, grad_value, grad_sampling_loc, grad_attn_weight, *, im2col_step):
    """Gradients by autograd through the pure-PyTorch forward, written into mmcv's output buffers."""
    inputs = [t.detach().requires_grad_(True) for t in (value, sampling_locations, attention_weights)]
    with torch.enable_grad():
        out = _ms_deform_attn(inputs[0], spatial_shapes, inputs[1], inputs[2])
        grads = torch.autograd.grad(out, inputs, grad_output)
    for buf, g in zip((grad_value, grad_sampling_loc, grad_attn_weight), grads):
        buf.copy_(g)


def _missing(name: str):
    def kernel(*args, **kwargs):
        raise WildtrainError(f"mmcv op '{name}' has no pure-PyTorch stand-in in wildtrain; this model needs "
                             f"compiled mmcv (docs/how-to/mmdetection.md, compiled mmcv)")

    kernel.__name__ = name
    return kernel


def __getattr__(name: str):
    """mmcv's ext_loader only checks that each kernel name exists; unknown kernels fail when called."""
    if name.startswith("_"):
        raise AttributeError(name)
    return _missing(name)


def compiled_mmcv() -> bool:
    """True when a real compiled mmcv (not this stand-in) provides `mmcv._ext`."""
    if sys.modules.get("mmcv._ext") is sys.modules[__name__]:
        return False
    try:
        importlib.import_module("mmcv._ext")
    except ImportError:
        return False
    return True


def install() -> bool:
    """Register this module as `mmcv._ext` unless compiled mmcv is installed; True if the stand-in is used."""
    if compiled_mmcv():
        return False
    sys.modules["mmcv._ext"] = sys.modules[__name__]
    return True
