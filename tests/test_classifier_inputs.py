"""Bad classifier input is one clear line; pretrained weights go through torchvision's real weights API."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from classifier_data import SMALL, tiny_params, write_crops
from conftest import REPO, pipeline_env
from wildtrain import params
from wildtrain.families.classifier.backbones import build
from wildtrain.families.classifier.datamodule import CropDataModule
from wildtrain.errors import WildtrainError


def _one_line(exc: pytest.ExceptionInfo, *needles: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    for n in needles:
        assert n in msg, msg


def _break(crops, case: str) -> None:
    if case == "empty_class":
        for f in (crops / "train/bird").iterdir():
            f.unlink()
    elif case == "missing_in_val":
        for f in (crops / "val/zebra").iterdir():
            f.unlink()
    elif case == "unknown_in_val":
        (crops / "val/lion").mkdir()
        (crops / "val/antelope/antelope_0.png").rename(crops / "val/lion/x.png")
    elif case == "corrupt":
        (crops / "train/zebra/zebra_3.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")


@pytest.mark.parametrize("case, needles", [
    ("empty_class", ["train/bird", "empty class folder"]),
    ("missing_in_val", ["val", "'zebra' is present in train but has no crops here"]),
    ("unknown_in_val", ["val/lion", "no training crops"]),
    ("corrupt", ["zebra_3.png", "unreadable image"]),
])
def test_bad_crops_are_one_clear_line(tmp_path, case, needles):
    crops = write_crops(tmp_path, SMALL)
    _break(crops, case)
    with pytest.raises(WildtrainError) as e:
        CropDataModule(crops, params.load(tiny_params(tmp_path)).classifier)
    _one_line(e, *needles)


def test_weights_with_other_num_classes_are_refused(tmp_path):
    f = tmp_path / "three.pt"
    torch.save(build("resnet18", 3).state_dict(), f)
    with pytest.raises(WildtrainError) as e:
        build("resnet18", 5, weights=f)
    _one_line(e, "three.pt", "trained for 3 classes but the data has 5")
    assert build("resnet18", 3, weights=f).fc.out_features == 3  # the matching count loads
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(WildtrainError) as e:
        build("resnet18", 3, weights=tmp_path / "junk.pt")
    _one_line(e, "junk.pt", "not a loadable state dict")


def test_pretrained_loads_imagenet_weights_through_torchvision(tmp_path, monkeypatch):
    """Where the weights can be fetched they are used: torchvision's API finds them in the hub cache
    (where its download puts them) and we keep the body and give it a fresh head."""
    from torchvision.models import MobileNet_V3_Small_Weights, get_model

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    imagenet = get_model("mobilenet_v3_small", weights=None).state_dict()
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(imagenet, cache / MobileNet_V3_Small_Weights.DEFAULT.url.rsplit("/", 1)[1])
    model = build("mobilenet_v3_small", 4, pretrained=True)
    assert torch.equal(model.features[0][0].weight, imagenet["features.0.0.weight"])
    assert model.classifier[-1].out_features == 4


def test_pretrained_offline_is_one_clear_line(tmp_path):
    """Offline (every connection refused), the real download is attempted and fails with one line."""
    write_crops(tmp_path, SMALL)
    tiny_params(tmp_path, pretrained=True, backbone="mobilenet_v3_small")
    netlog = tmp_path / "net.log"
    env = pipeline_env(REPO, netlog)
    env["TORCH_HOME"] = str(tmp_path / "torch")
    env["YOLO_CONFIG_DIR"] = str(tmp_path / ".ultralytics")
    proc = subprocess.run([sys.executable, str(REPO / "stages/train.py"), "classifier"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert "classifier.pretrained: cannot fetch ImageNet weights for mobilenet_v3_small" in errors[0]
    assert "set pretrained: false" in errors[0]
    assert "download.pytorch.org" in netlog.read_text()  # torchvision really tried
