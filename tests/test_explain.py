"""Grad-CAM for the classifier: the heatmap follows the evidence the class score used, on hand-built nets
where that evidence is known, for a CNN feature map and for ViT tokens; and the sample picked for the PNG."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from wildtrain.evaluate.explain import cam_layer, grad_cam, pick


class QuadrantNet(nn.Module):
    """Class c's logit is channel c of `layer4` averaged over the image: the score rises wherever that channel
    is active, so Grad-CAM must light up exactly where the input carries channel c."""

    def __init__(self):
        super().__init__()
        self.layer4 = nn.Conv2d(3, 3, 1, bias=False)
        with torch.no_grad():
            self.layer4.weight.copy_(torch.eye(3).view(3, 3, 1, 1))

    def forward(self, x):
        return torch.relu(self.layer4(x)).mean(dim=(2, 3))


def test_heatmap_is_where_the_evidence_for_the_explained_class_is():
    net = QuadrantNet().eval()
    x = torch.zeros(2, 3, 8, 8)
    x[:, 0, :4, :4] = 1.0  # channel 0 (class 0) only in the top-left quadrant
    x[:, 1, 4:, 4:] = 2.0  # channel 1 (class 1) only in the bottom-right one, stronger: the predicted class
    cams = grad_cam(net, net.layer4, x, classes=[0, 1])
    assert cams.shape == (2, 8, 8) and cams.max() == pytest.approx(1.0)
    assert cams[0, :3, :3].min() > 0.99 and cams[0, 5:, 5:].max() < 1e-6  # class 0: top-left only
    assert cams[1, 5:, 5:].min() > 0.99 and cams[1, :3, :3].max() < 1e-6  # class 1: bottom-right only
    default = grad_cam(net, net.layer4, x)  # no classes given: the predicted one (class 1, the stronger signal)
    np.testing.assert_allclose(default, grad_cam(net, net.layer4, x, classes=[1, 1]))
    assert not any(p.grad is not None for p in net.parameters())  # no gradients left behind on the weights


class TokenNet(nn.Module):
    """A ViT-shaped net: `encoder.layers[-1]` emits (batch, 1 + 4x4 tokens, channels); the class token is
    ignored, class c = mean of channel c over the patch tokens."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.layers = nn.Sequential(nn.Identity())

    def forward(self, x):
        b = x.shape[0]
        tokens = nn.functional.avg_pool2d(x, 2).flatten(2).transpose(1, 2)  # (b, 16, 3)
        tokens = torch.cat([torch.zeros(b, 1, 3), tokens], 1)
        return torch.relu(self.encoder.layers(tokens))[:, 1:].mean(1)


def test_vit_tokens_become_a_patch_grid():
    net = TokenNet()
    x = torch.zeros(1, 3, 8, 8)
    x[0, 2, :, 6:] = 1.0  # class 2's evidence in the right-most patch column
    cam = grad_cam(net, cam_layer(net, "vit_b_16", 8), x, classes=[2])[0]
    assert cam[:, 7].min() > 0.5 and cam[:, :4].max() < 1e-6


def test_every_backbone_has_a_layer_to_explain():
    from wildtrain.families.classifier.backbones import build

    # one backbone per rule in cam_layer; the ViT's tokens are covered by TokenNet (a ViT-B is slow on a CPU)
    for name in ("resnet18", "efficientnet_b0", "mobilenet_v3_small"):
        model = build(name, 3).eval()
        cam = grad_cam(model, cam_layer(model, name, 64), torch.rand(2, 3, 64, 64))
        assert cam.shape == (2, 64, 64) and np.isfinite(cam).all() and cam.max() <= 1.0
    resnet = build("resnet18", 3).eval()
    assert cam_layer(resnet, "resnet18", 224) is resnet.layer4  # 7 x 7 cells: the usual last stage
    assert cam_layer(resnet, "resnet18", 64) is resnet.layer2  # 8 x 8 (layer3 would be 4 x 4, layer4 2 x 2)
    with pytest.raises(ValueError, match="no Grad-CAM layer"):
        cam_layer(nn.Linear(1, 1), "alexnet", 64)


def test_pick_shows_misclassified_and_every_class():
    labels = [0, 0, 0, 1, 1, 2, 2, 2]
    probs = np.array([[.9, .05, .05], [.8, .1, .1], [.2, .7, .1],   # third: a 0 called 1 (wrong, 0.7)
                      [.1, .85, .05], [.6, .3, .1],                  # fifth: a 1 called 0 (wrong, 0.6)
                      [.1, .1, .8], [.05, .05, .9], [.3, .3, .4]])
    chosen = pick(labels, probs, 6)
    assert chosen[:2] == [2, 4]  # the misclassified first, most confident first
    assert set(chosen[2:5]) == {0, 3, 6} and len(chosen) == len(set(chosen)) == 6  # then one per class
    assert pick(labels, probs, 20) == pick(labels, probs, 20) and len(pick(labels, probs, 20)) == 8
    assert pick(labels, probs, 0) == []
