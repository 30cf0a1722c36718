"""Fit a Lightning family (classifier, segmenter): best checkpoint and early stopping on the family's monitored
val metric, devices/DDP (also across machines: num_nodes under torchrun or SLURM), AMP, gradient accumulation, and
resume from the last checkpoint. Rank 0 alone tracks and writes outputs (pipeline.train.is_rank_zero).

Lightning checkpoints are full pickles (optimizer, callback and loop state): they are loaded with
`weights_only=False`, and only from `runs/<family>/`, which this pipeline alone writes. Weights handed to later
stages are a plain state dict (`model.pt` in the family's model folder, loaded with `weights_only=True`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from wildtrain.devices import lightning_devices
from wildtrain.errors import WildtrainError

LAST, BEST = "last.ckpt", "best.ckpt"


@dataclass(frozen=True)
class FitResult:
    state_dict: dict | None  # best weights of the module's `model` (rank 0 only; None on other DDP ranks)
    epochs_completed: int
    best_score: float | None
    resumed_after_epochs: int | None  # epochs the resumed checkpoint had completed


def model_state(ckpt: Path) -> dict:
    """The module's `model` weights from one of our own Lightning checkpoints."""
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    return {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}


def fit(family: str, cfg, dm: pl.LightningDataModule, module: pl.LightningModule, workdir: Path, resume: bool,
        monitor: tuple[str, str], callbacks: list, logger=False) -> FitResult:
    """`cfg`: the family's params section; `monitor`: (val metric, "max"|"min"); `callbacks`/`logger`: the
    family's own (how its epochs reach dvclive and MLflow)."""
    metric, mode = monitor
    accelerator, devices = lightning_devices(cfg.device, cfg.devices, f"{family}.device")
    last = workdir / LAST
    ckpt_path = last if resume and last.is_file() else None
    # A checkpoint is saved when an epoch's validation ends, so it holds `epoch` + 1 completed epochs.
    resumed_from = torch.load(last, map_location="cpu", weights_only=False)["epoch"] + 1 if ckpt_path else None
    checkpoint = ModelCheckpoint(dirpath=workdir, filename=BEST.removesuffix(".ckpt"), monitor=metric, mode=mode,
                                 save_top_k=1, save_last=True, enable_version_counter=False)
    try:
        # Several machines (num_nodes): Lightning reads the launcher's environment (torchrun's RANK/WORLD_SIZE/
        # MASTER_ADDR, or SLURM's SLURM_PROCID/SLURM_NTASKS/SLURM_NODEID) and joins one DDP group over all of them.
        distributed = cfg.devices > 1 or isinstance(devices, list) or cfg.num_nodes > 1
        trainer = pl.Trainer(max_epochs=cfg.epochs, accelerator=accelerator, devices=devices,
                             num_nodes=cfg.num_nodes, strategy="ddp" if cfg.num_nodes > 1 else
                             cfg.strategy if distributed else "auto",
                             precision=cfg.precision, accumulate_grad_batches=cfg.accumulate_grad_batches,
                             callbacks=[checkpoint, EarlyStopping(monitor=metric, mode=mode, patience=cfg.patience),
                                        *callbacks],
                             logger=logger, default_root_dir=workdir, log_every_n_steps=1, enable_progress_bar=False,
                             enable_model_summary=False, num_sanity_val_steps=0)
    except (ValueError, RuntimeError) as e:  # Lightning's MisconfigurationException is a ValueError
        raise WildtrainError(f"{family}: {str(e).splitlines()[0]}") from None
    if accelerator == "cpu" and devices == 1:
        # One thread per core, stated rather than inherited: the thread count changes the weights, and a parent
        # process that imported Ultralytics has set OMP_NUM_THREADS=1 in the environment stages inherit.
        torch.set_num_threads(len(os.sched_getaffinity(0)))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path, weights_only=False)
    if not trainer.is_global_zero:
        return FitResult(None, trainer.current_epoch, None, resumed_from)
    best = Path(checkpoint.best_model_path) if checkpoint.best_model_path else last
    score = checkpoint.best_model_score
    return FitResult(model_state(best), trainer.current_epoch, None if score is None else float(score), resumed_from)
