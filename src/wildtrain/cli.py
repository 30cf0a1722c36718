"""`wildtrain`: the same operations as the DVC stages, for use outside `dvc repro`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import typer

from wildtrain import env
from wildtrain.errors import WildtrainError
from wildtrain.pipeline.entry import run

app = typer.Typer(help="Reproducible wildlife-detection training pipelines (DVC + MLflow).", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
train_app = typer.Typer(help="Train a model (reads params.yaml `train`, `classifier` or `segmenter`).",
                        no_args_is_help=True)
config_app = typer.Typer(help="Compose params.yaml from config overlays.", no_args_is_help=True)
data_app = typer.Typer(help="Datasets: version a source with DVC (add); convert between COCO, VOC, YOLO, CSV and "
                            "image/mask pairs.", no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")


@app.command()
def prepare() -> None:
    """Generate or import the raw dataset (params: data)."""
    from wildtrain.pipeline.prepare import prepare as stage

    run(stage)


@app.command()
def convert() -> None:
    """Split and write canonical COCO per split plus the YOLO layout (params: convert)."""
    from wildtrain.pipeline.convert import convert as stage

    run(stage)


@app.command()
def rebalance() -> None:
    """Plan how often each classifier training crop is shown per epoch: clusters per class, capped and repeated
    (params: rebalance; a no-op plan while rebalance.enabled is false)."""
    from wildtrain.pipeline.rebalance import rebalance as stage

    run(stage)


@train_app.command("detector")
def train_detector(framework: Optional[str] = typer.Option(None, help="Override train.framework (yolo or mmdet).")) -> None:
    """Train the detector configured in params.yaml `train`."""
    import dataclasses

    from wildtrain.pipeline.train import train as stage

    def with_framework(p, root):
        if framework:
            p = dataclasses.replace(p, train=dataclasses.replace(p.train, framework=framework))
        return stage(p, root, "detector")

    run(with_framework)


@train_app.command("classifier")
def train_classifier() -> None:
    """Train the species classifier on the ROI crops (params.yaml `classifier`)."""
    from wildtrain.pipeline.train import train as stage

    run(stage, "classifier")


@train_app.command("segmenter")
def train_segmenter() -> None:
    """Train the semantic segmenter (U-Net) on the masks of the canonical split files (params.yaml `segmenter`)."""
    from wildtrain.pipeline.train import train as stage

    run(stage, "segmenter")


FAMILY = typer.Argument("detector", help="detector | classifier | two_stage | segmenter")


@app.command()
def evaluate(family: str = FAMILY) -> None:
    """Score the pipeline's model of a family on the held-out split (params: evaluate / classifier_evaluate /
    segmenter_evaluate)."""
    from wildtrain.pipeline.evaluate import evaluate as stage

    run(stage, family)


@app.command()
def register(family: str = FAMILY) -> None:
    """Register the evaluated model of a family in MLflow and apply the alias gate."""
    from wildtrain.pipeline.register import register as stage

    run(stage, family)


@app.command()
def predict(
    source: str = typer.Argument(..., help="An image, a folder (recursive), a .zip/.tar(.gz) archive, or a .txt list "
                                           "of paths."),
    out: str = typer.Option("predictions", "--out", "-o", help="Output folder."),
    model: Optional[str] = typer.Option(None, help="models:/NAME@ALIAS, models:/NAME/VERSION or a model folder "
                                                   "(default: the two-stage champion, else the detector champion)."),
    slice_: Optional[str] = typer.Option(None, "--slice", help="auto | off | SIZE (px): slice large images."),
    conf: Optional[float] = typer.Option(None, help="Score threshold (default: params.yaml predict.conf)."),
    iou: Optional[float] = typer.Option(None, help="NMS IoU threshold."),
    overlap: Optional[float] = typer.Option(None, help="Slice overlap (fraction)."),
    batch: Optional[int] = typer.Option(None, help="Images or slices per forward pass."),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda:N."),
    draw: bool = typer.Option(False, "--draw", help="Also write a copy of each image with its boxes."),
) -> None:
    """Run a trained model on your images: COCO JSON, CSV, counts per class (+ GeoJSON for GeoTIFFs) under --out;
    a segmenter: mask PNGs (masks/) and class areas (areas.csv).

    Exit code 0: every image predicted; 3: some files could not be read (named in report.json); 2: an error."""
    from wildtrain.pipeline.predict import predict as stage

    outcome = {}

    def call(p, root):
        outcome.update(stage(p, root, source, out, model=model, draw=draw, slice=slice_, conf=conf, iou=iou,
                             overlap=overlap, batch=batch, device=device))

    run(call)
    if outcome.get("skipped"):
        raise typer.Exit(3)


@app.command()
def export(
    out: str = typer.Argument(..., help="Output folder (files are written into it)."),
    model: str = typer.Option(..., "--model", help="models:/NAME@ALIAS, models:/NAME/VERSION or a model folder."),
    to: str = typer.Option(..., "--to", help="stac (the STAC-MLM item and every file it names) | dlpk | onnx | "
                                             "torchscript | card"),
) -> None:
    """Write a model's publication: its STAC-MLM item, Esri .dlpk, ONNX, TorchScript or model card (README
    "Publishing"). A version registered with its publication gets exactly those files."""
    from wildtrain.pipeline.export import export as stage

    run(lambda p, root: stage(p, root, model, to, out))


@app.command()
def repro(stage: Optional[str] = typer.Argument(None, help="Run up to this stage (default: all).")) -> None:
    """Run the DVC pipeline (`dvc repro`) with the offline switches set."""
    env.configure()
    cmd = [sys.executable, "-m", "dvc", "repro"] + ([stage] if stage else [])
    raise typer.Exit(subprocess.call(cmd, env=os.environ.copy()))


@app.command()
def tune(workers: int = typer.Option(1, min=1, help="Worker processes on the same study storage."),
         apply: bool = typer.Option(False, "--apply", help="Then run `dvc exp run -S <best params>`."),
         first_worker: int = typer.Option(0, min=0, help="Number of this machine's first worker (sampler seed "
                                          "tune.seed + number): give each machine sharing a storage its own range."),
         worker: Optional[int] = typer.Option(None, hidden=True, help="Internal: run as worker N.")) -> None:
    """Optuna search over params.yaml `tune.space` with the real train/evaluate stages (resumable)."""
    from wildtrain import tune as sweep

    if worker is not None:
        run(lambda p, root: sweep.work(p, root, worker))
    else:
        run(lambda p, root: sweep.launch(p, root, workers=workers, apply=apply,
                                                first_worker=first_worker))


@app.command()
def replicates(
    n: int = typer.Option(3, "--n", min=1, help="Replicates: seeds first_seed .. first_seed + n - 1."),
    set_: list[str] = typer.Option([], "--set", "-S", help="Override a param for every replicate: -S "
                                                           "train.lr0=0.001 (repeatable; as dvc exp run -S)."),
    compare: Optional[tuple[str, str]] = typer.Option(None, "--compare", help="Two param sets A B (each "
                                                      "'key=value ...', '' = params.yaml): paired difference A - B."),
    family: list[str] = typer.Option([], "--family", "-f", help="detector | classifier | two_stage | segmenter "
                                     "(repeatable; default all): runs up to these evaluate stages."),
    first_seed: int = typer.Option(0, min=0, help="Seed of the first replicate."),
    name: Optional[str] = typer.Option(None, help="Report name under reports/replicates/ (default: from the "
                                                  "param set's hash)."),
) -> None:
    """Train the current params with N training seeds as DVC experiments (up to the evaluate stages; resumable:
    replicates already in `dvc exp show` are skipped), then write mean, sd, min, max per metric (README
    "Comparing runs")."""
    from wildtrain.replicates.run import replicates as stage

    run(lambda p, root: stage(Path(root), set_, n, first_seed, family, compare, name))


@config_app.command("apply")
def config_apply(overlay: str = typer.Argument(..., help="A YAML overlay, e.g. configs/tiny.yaml.")) -> None:
    """Merge an overlay into params.yaml (unknown keys are refused; comments are not kept)."""
    from wildtrain.params import apply_overlay

    try:
        apply_overlay(overlay)
    except WildtrainError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2)
    typer.echo(f"params.yaml updated from {overlay}")


@data_app.command("add")
def data_add(
    path: str = typer.Argument(..., help="A dataset folder or .zip/.tar/.tar.gz archive (any supported format)."),
    name: Optional[str] = typer.Option(None, help="Folder name under data/source (default: the folder/archive name)."),
    force: bool = typer.Option(False, "--force", help="Replace data/source/NAME when it holds a different dataset."),
) -> None:
    """Version a dataset with DVC: copy it to data/source/NAME, `dvc add` it, set data.source in params.yaml."""
    from wildtrain.versioning import add

    root = env.configure()
    try:
        done = add(path, name, root, force=force)
    except WildtrainError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2)
    src = done["source"]
    typer.echo(f"{src} ({done['how']}): versioned by DVC, md5 {done['md5']} in {done['dvc_file']}; params.yaml data.source = {src}")
    typer.echo(f"next: git add {done['dvc_file']} {Path(src).parent / '.gitignore'} params.yaml && git commit "
               f"-m 'data: {Path(src).name}' && dvc push; then dvc repro")


@data_app.command("convert")
def data_convert(
    src: str = typer.Argument(..., help="A dataset folder or .zip/.tar/.tar.gz archive (any supported format)."),
    dst: str = typer.Argument(..., help="Output folder (replaced)."),
    to: str = typer.Option(..., "--to", help="coco | voc | yolo | csv | masks"),
    source_format: str = typer.Option("auto", "--from", help="auto | coco | voc | yolo | csv | masks"),
    invalid_boxes: str = typer.Option("clip", help="Boxes outside the image: clip | drop | fail."),
    unannotated: str = typer.Option("skip", help="Images no annotation file mentions: skip | negative (kept empty)."),
    ignore: int = typer.Option(255, "--ignore", help="Image/mask pairs: the pixel value of unlabelled pixels."),
) -> None:
    """Convert a dataset between formats, validated as prepare does (images copied as they are unless normalized)."""
    from wildtrain.data.transcode import transcode
    from wildtrain.data.validate import summary_line

    try:
        fmt, report = transcode(Path(src), Path(dst), to, source_format, invalid_boxes=invalid_boxes,
                                unannotated=unannotated, masks={"ignore": ignore})
    except WildtrainError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2)
    typer.echo(f"{src} ({fmt}) -> {dst} ({to}): {summary_line(report)}")


if __name__ == "__main__":
    app()
