"""Shared by the benchmarks: a detector model folder made by the real pipeline (prepare -> convert -> train),
cached under benchmarks/results/, and the synthetic survey images they predict on.

Training takes minutes on a 2-core CPU; the folder is reused by later runs (delete it to retrain).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def save_result(name: str, result: dict, shown: dict | None = None) -> Path:
    """benchmarks/results/<name>.json (what benchmarks/README.md quotes), and the part worth reading on stdout."""
    import json

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result if shown is None else shown, indent=2))
    return path


def scratch_project(prefix: str) -> Path:
    """A throw-away project root (dvc.yaml + params.yaml copied), configured offline; the cwd moves there because
    Ultralytics and MLflow write relative to it."""
    from wildtrain import env

    root = Path(tempfile.mkdtemp(prefix=prefix))
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, root / name)
    os.chdir(root)
    env.configure(root)
    return root


def small_params(root: Path, *, images: int, imgsz: int, epochs: int, crops: bool = False, **train):
    """params.yaml of `root` with a small synthetic dataset and a short YOLO training."""
    from wildtrain import params

    p = params.load(root / "params.yaml")
    synthetic = dataclasses.replace(p.data.synthetic, num_images=images, image_size=imgsz)
    crops_cfg = dataclasses.replace(p.convert.crops, enabled=crops)
    return dataclasses.replace(
        p, data=dataclasses.replace(p.data, synthetic=synthetic),
        convert=dataclasses.replace(p.convert, crops=crops_cfg),
        train=dataclasses.replace(p.train, **{"epochs": epochs, "imgsz": imgsz, "batch": 8, "workers": 0,
                                              "close_mosaic": 0, "resume": "never", **train}))


def pipeline_model(name: str = "yolo11n_320", *, images: int = 120, imgsz: int = 320, epochs: int = 30,
                   start: Path | None = None) -> Path:
    """benchmarks/results/<name>: a YOLO11n model folder (model.json + model.pt) written by the pipeline's own
    train stage on synthetic survey images (from yolo11n.yaml, or fine-tuned from the model folder `start`);
    trained once, then reused."""
    folder = RESULTS / name
    if (folder / "model.json").is_file():
        return folder
    cwd = os.getcwd()
    root = scratch_project("wildtrain-bench-model-")
    try:
        from wildtrain.pipeline.convert import convert
        from wildtrain.pipeline.prepare import prepare
        from wildtrain.pipeline.train import train

        model = str(start / "model.pt") if start else "yolo11n.yaml"
        p = small_params(root, images=images, imgsz=imgsz, epochs=epochs, device="cpu", model=model)
        prepare(p, root)
        convert(p, root)
        print(f"training {name} ({epochs} epochs on {images} synthetic {imgsz} px images, from {model}) with the "
              f"pipeline's train stage; cached in {folder}", flush=True)
        train(p, root)
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(root / p.paths.models, folder)
    finally:
        os.chdir(cwd)
        shutil.rmtree(root, ignore_errors=True)
    return folder


def survey_image(seed: int, width: int = 2300, height: int = 2500, density: float = 5 / 320 ** 2) -> np.ndarray:
    """A large synthetic survey image (HxWx3 uint8 RGB) with animals of the training classes."""
    from wildtrain.data.synthetic import render_scene

    side = max(width, height)
    img, _ = render_scene(np.random.default_rng(seed), side, int(side * side * density))
    return np.ascontiguousarray(np.asarray(img.convert("RGB"))[:height, :width])


def load_line() -> str:
    """The machine's load averages when a figure was measured (2 shared cores: other jobs skew timings)."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} cores"


def lightning_run(dm, make_module, epochs: int) -> float:
    """Seconds of training epochs 1.. (epoch 0 is warm-up) by a plain Lightning Trainer (no validation, logger or
    checkpoints): the family's DataModule and LightningModule as its stage uses them."""
    import lightning.pytorch as pl

    class Clock(pl.Callback):
        def on_train_epoch_start(self, trainer, module):
            if trainer.current_epoch == 1:
                self.t0 = time.perf_counter()

        def on_train_end(self, trainer, module):
            self.seconds = time.perf_counter() - self.t0

    clock = Clock()
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         num_sanity_val_steps=0, callbacks=[clock])
    trainer.fit(make_module(), datamodule=dm)
    return clock.seconds


def bare_run(dm, make_module, epochs: int) -> float:
    """The same epochs as a bare PyTorch loop over the same DataLoader, network, loss and optimizer."""
    import torch

    module = make_module()
    opt = module.configure_optimizers()["optimizer"]
    loader = dm.train_dataloader()
    module.model.train()
    for epoch in range(epochs):
        if epoch == 1:
            t0 = time.perf_counter()
        for x, y in loader:
            opt.zero_grad(set_to_none=True)
            loss = module.loss(module.model(x), y)
            loss.backward()
            opt.step()
    torch.cuda.synchronize() if torch.cuda.is_available() else None
    return time.perf_counter() - t0
