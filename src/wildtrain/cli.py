"""`wildtrain`: the same operations as the DVC stages, for use outside `dvc repro`."""

from __future__ import annotations

import enum
import os
import subprocess
import sys
from pathlib import Path
from typing import Literal, Optional

import typer
import typer.core

from wildtrain import __version__, env
from wildtrain.errors import WildtrainError
from wildtrain.pipeline.entry import run


class OneLineErrors(typer.core.TyperGroup):
    """A usage error (a value of the wrong type, an unknown option, a missing argument) as one `error:` line naming
    it, like every other error of the CLI, instead of a usage block in a box. Exit code 2 as before."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except typer.TyperException as e:  # typer's (vendored) click exceptions
            if type(e).__name__ == "NoArgsIsHelpError":  # a command alone: its help, as before
                typer.echo(e.format_message(), err=True)
                sys.exit(e.exit_code)
            ctx = getattr(e, "ctx", None)
            where = f"{ctx.command_path}: " if ctx is not None else ""
            hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            typer.echo(f"error: {where}{' '.join(e.format_message().split())}{hint}", err=True)
            sys.exit(e.exit_code)
        except typer.Abort:
            typer.echo("error: aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


# A flag takes no value: its help shows `--draw` (or `--draw/--no-draw`), not `--draw <bool>`.
_display_type = typer.core.TyperOption.display_type_rich
typer.core.TyperOption.display_type_rich = lambda self, ctx: None if self.is_flag else _display_type(self, ctx)

# The CLI's choices as types: --help lists them, completion offers them, a wrong one is one line. Spelled out here so
# that `import wildtrain.cli` stays cheap; tests/test_cli.py checks them against the lists the code acts on.
FamilyName = enum.Enum("FamilyName", {n: n for n in ("detector", "classifier", "two_stage", "segmenter",
                                                            "yoloseg")}, type=str)
Publication = Literal["stac", "dlpk", "onnx", "torchscript", "openvino", "card"]
DataFormat = Literal["coco", "voc", "yolo", "csv", "masks"]
SourceFormat = Literal["auto", "coco", "voc", "yolo", "csv", "masks", "label_studio"]
BoxPolicy = Literal["clip", "drop", "fail"]
Unannotated = Literal["skip", "negative"]
Framework = Literal["yolo", "mmdet"]
Strategy = Literal["uncertainty", "diverse", "random"]
# Open sets (a size, a device index): their named values are offered by completion, the rest checked by predict.
SLICES = ("auto", "off")
DEVICES = ("auto", "cpu", "cuda", "mps")


def offer(values: tuple[str, ...]):
    return lambda incomplete: [v for v in values if v.startswith(incomplete)]


def show_version(value: bool) -> None:
    if value:
        typer.echo(f"wildtrain {__version__}")
        raise typer.Exit()


app = typer.Typer(help="Reproducible wildlife-detection training pipelines (DVC + MLflow).", no_args_is_help=True,
                  pretty_exceptions_enable=False, cls=OneLineErrors,
                  context_settings={"help_option_names": ["-h", "--help"]})
train_app = typer.Typer(help="Train a model (reads params.yaml `train`, `classifier`, `segmenter` or `yoloseg`).",
                        no_args_is_help=True)
config_app = typer.Typer(help="Compose params.yaml from config overlays.", no_args_is_help=True)
data_app = typer.Typer(help="Datasets: version a source with DVC (add); convert between COCO, VOC, YOLO, CSV and "
                            "image/mask pairs.", no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")
annotate_app = typer.Typer(help="The annotation loop through Label Studio (LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY; "
                                "`make labelstudio` starts one): push images for review, pull the reviewed labels.",
                           no_args_is_help=True)
app.add_typer(annotate_app, name="annotate")


@app.callback()
def main(version: bool = typer.Option(False, "--version", "-V", is_eager=True, callback=show_version,
                                      help="Show the version and exit.")) -> None:
    """Reproducible wildlife-detection training pipelines (DVC + MLflow)."""


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
def train_detector(framework: Optional[Framework] = typer.Option(None, help="Override train.framework.")) -> None:
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


@train_app.command("yoloseg")
def train_yoloseg() -> None:
    """Train the instance segmenter (Ultralytics YOLO-seg) on polygons of the canonical masks (params.yaml `yoloseg`;
    off the default pipeline: `make instances`)."""
    from wildtrain.pipeline.train import train as stage

    run(stage, "yoloseg")


FAMILY = typer.Argument(FamilyName.detector, help="The model family.")


@app.command()
def evaluate(family: FamilyName = FAMILY) -> None:
    """Score the pipeline's model of a family on the held-out split (params: evaluate / classifier_evaluate /
    segmenter_evaluate / yoloseg_evaluate)."""
    from wildtrain.pipeline.evaluate import evaluate as stage

    run(stage, family.value)


@app.command()
def register(family: FamilyName = FAMILY) -> None:
    """Register the evaluated model of a family in MLflow and apply the alias gate."""
    from wildtrain.pipeline.register import register as stage

    run(stage, family.value)


@app.command()
def predict(
    source: str = typer.Argument(..., help="An image, a folder (recursive), a .zip/.tar(.gz) archive, or a .txt list "
                                           "of paths."),
    out: str = typer.Option("predictions", "--out", "-o", help="Output folder: new, empty, or a previous predict "
                                                               "run's (with --overwrite)."),
    model: Optional[str] = typer.Option(None, help="models:/NAME@ALIAS, models:/NAME/VERSION (from "
                                                   "MLFLOW_TRACKING_URI, else the project's mlflow.db) or a model "
                                                   "folder (default: the two-stage champion, else the detector "
                                                   "champion)."),
    conf: Optional[float] = typer.Option(None, help="Detectors: score threshold, in [0, 1)."),
    iou: Optional[float] = typer.Option(None, help="Detectors: NMS IoU threshold, in (0, 1]."),
    max_det: Optional[int] = typer.Option(None, "--max-det", help="Detectors: most boxes per window (slice); an "
                                                                  "image's total is not limited, and report.json "
                                                                  "says where it bound."),
    slice_: Optional[str] = typer.Option(None, "--slice", metavar="<auto|off|SIZE>", autocompletion=offer(SLICES),
                                         help="Detectors, segmenters: slice large images into windows of SIZE px "
                                              "(>= 32), or of the model's size (auto), or not (off)."),
    overlap: Optional[float] = typer.Option(None, help="Detectors, segmenters: window overlap, in [0, 1)."),
    merge_ios: Optional[float] = typer.Option(None, "--merge-ios", help="Detectors: merge same-class boxes of "
                                                                        "neighbouring windows (or overlapping frames) "
                                                                        "that overlap this much of the smaller one, "
                                                                        "in (0, 1]."),
    classes: Optional[str] = typer.Option(None, "--classes", help="Detectors: only these classes, comma-separated."),
    areas: Optional[str] = typer.Option(None, "--areas", help="Detectors: GeoPackage/GeoJSON polygons (strata, "
                                                              "transects): counts, area and density per polygon."),
    batch: Optional[int] = typer.Option(None, help="Images or windows per forward pass (>= 1)."),
    precision: Optional[str] = typer.Option(None, metavar="<fp32|bf16>", autocompletion=offer(("fp32", "bf16")),
                                            help="YOLO detectors: fp32 (default) or bf16: the backbone in bfloat16, "
                                                 "~2x faster on CPUs with AMX or AVX512-BF16 (with "
                                                 "WILDTRAIN_CPU_KERNELS=native); boxes close to fp32's, not "
                                                 "identical."),
    device: Optional[str] = typer.Option(None, metavar="<auto|cpu|cuda|cuda:N|mps>", autocompletion=offer(DEVICES),
                                         help="Where the model runs."),
    draw: bool = typer.Option(False, "--draw/--no-draw", help="Detectors, segmenters: also write a copy of each "
                                                              "image with its boxes or classes (draw/)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a previous predict run's outputs in --out: "
                                                              "removes only the files and folders predict writes "
                                                              "(report.json, detections.*, counts.csv, areas.csv, "
                                                              "masks/, draw/, ...); a folder holding anything else "
                                                              "is refused, never emptied."),
) -> None:
    """Run a trained model on your images: COCO JSON, CSV, counts per class (+ GeoJSON, GeoPackage and a census
    with density per km2 for GeoTIFFs) under --out; a segmenter: mask PNGs (masks/) and class areas (areas.csv).

    Options default to params.yaml `predict` inside a project, else to the built-in defaults: it runs anywhere with
    --model (a folder opens no MLflow store) and writes only under --out. An option the model's family does not
    take is refused.

    Exit code 0: every image predicted; 3: some files could not be read (named in report.json); 2: an error."""
    from wildtrain.pipeline.predict import predict as stage

    outcome = {}

    def call(p, root):
        outcome.update(stage(p, root, source, out, model=model, draw=draw, overwrite=overwrite, areas=areas,
                             classes=classes, conf=conf, iou=iou, max_det=max_det, slice=slice_, overlap=overlap,
                             merge_ios=merge_ios, batch=batch, precision=precision,
                             device=device))

    run(call, params_optional=True)
    if outcome.get("skipped"):
        raise typer.Exit(3)


@app.command()
def export(
    model: str = typer.Option(..., "--model", help="models:/NAME@ALIAS, models:/NAME/VERSION or a model folder."),
    to: Publication = typer.Option(..., "--to", help="stac: the STAC-MLM item and every file it names; dlpk: an "
                                                     "Esri deep-learning package; onnx; torchscript; openvino: "
                                                     "model.xml + model.bin; card: the model card."),
    out: str = typer.Option("publication", "--out", "-o", help="Output folder (files are written into it)."),
) -> None:
    """Write a model's publication: its STAC-MLM item, Esri .dlpk, ONNX, TorchScript, OpenVINO IR or model card
    (docs/tutorials/publishing.md). A version registered with its publication gets exactly those files."""
    from wildtrain.pipeline.export import export as stage

    run(lambda p, root: stage(p, root, model, to, out))


@app.command()
def repro(stage: Optional[str] = typer.Argument(None, help="Run up to this stage (default: all).")) -> None:
    """Run the DVC pipeline (`dvc repro`) with the offline switches set."""
    try:
        env.configure()
    except WildtrainError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2)
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
    family: list[FamilyName] = typer.Option([], "--family", "-f", help="Repeatable (default: all): runs up to "
                                                                        "these evaluate stages."),
    first_seed: int = typer.Option(0, min=0, help="Seed of the first replicate."),
    name: Optional[str] = typer.Option(None, help="Report name under reports/replicates/ (default: from the "
                                                  "param set's hash)."),
) -> None:
    """Train the current params with N training seeds as DVC experiments (up to the evaluate stages; resumable:
    replicates already in `dvc exp show` are skipped), then write mean, sd, min, max per metric
    (docs/how-to/seed-replicates.md)."""
    from wildtrain.replicates.run import replicates as stage

    run(lambda p, root: stage(Path(root), set_, n, first_seed, [f.value for f in family], compare,
                                            name))


@app.command()
def models(name: Optional[str] = typer.Argument(None, help="Only this registered model."),
           json_: bool = typer.Option(False, "--json", help="As JSON, for scripts.")) -> None:
    """List the registered models of the MLflow registry (MLFLOW_TRACKING_URI, else the project's mlflow.db): each
    version, its aliases, and the gate metric it was registered with (95% interval; gain over the champion)."""
    from wildtrain import catalog

    def show(p, root):
        uri = env.tracking_uri(Path(root))
        found = catalog.listing(uri, name)
        typer.echo(catalog.as_json(found, uri) if json_ else catalog.render(found, uri))

    run(show, params_optional=True)


@app.command("ci-rerun")
def ci_rerun(
    base: str = typer.Option("", "--base", help="The commit to compare with (branch, tag or sha), e.g. origin/main."),
    out: str = typer.Option("reports/ci.md", "--out", "-o", help="The report (plots diff PNGs are written beside it)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Pull and plan (what `dvc repro` would run), run nothing."),
    pull: bool = typer.Option(True, "--pull/--no-pull", help="--no-pull: recompute what the local cache lacks "
                              "instead of pulling it (the weekly check for drift in the environment)."),
) -> None:
    """Rerun what changed since BASE (after `dvc pull` when a remote is configured) and write reports/ci.md: stages
    and why, params diff, metric deltas against their noise bands, registry decision, CPUs, plots (docs/how-to/ci-reruns.md).
    Exits non-zero only on a failure, never on a metric change."""
    from wildtrain.ci.rerun import main

    run(lambda p, root: main(p, Path(root), base, out, dry_run, pull))


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

    try:
        root = env.configure()
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
    out: str = typer.Option(..., "--out", "-o", help="Output folder (replaced)."),
    to: DataFormat = typer.Option(..., "--to", help="The format to write."),
    source_format: SourceFormat = typer.Option("auto", "--from", help="The source's format (auto: detected)."),
    invalid_boxes: BoxPolicy = typer.Option("clip", help="Boxes outside the image: clipped, dropped, or an error."),
    unannotated: Unannotated = typer.Option("skip", help="Images no annotation file mentions: skipped, or kept as "
                                                        "negatives (no boxes)."),
    ignore: int = typer.Option(255, "--ignore", help="Image/mask pairs: the pixel value of unlabelled pixels."),
) -> None:
    """Convert a dataset between formats, validated as prepare does (images copied as they are unless normalized)."""
    from wildtrain.data.transcode import transcode
    from wildtrain.data.validate import summary_line

    try:
        fmt, report = transcode(Path(src), Path(out), to, source_format, invalid_boxes=invalid_boxes,
                                unannotated=unannotated, masks={"ignore": ignore})
    except WildtrainError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2)
    typer.echo(f"{src} ({fmt}) -> {out} ({to}): {summary_line(report)}")


@annotate_app.command("push")
def annotate_push(
    source: str = typer.Argument(..., help="Images: a folder (recursive), a .zip/.tar(.gz) archive or a .txt list."),
    n: int = typer.Option(..., "--n", help="How many images to push."),
    strategy: Strategy = typer.Option("uncertainty", help="uncertainty: the champion's borderline boxes; diverse: "
                                                          "k-center on thumbnails; random."),
    model: Optional[str] = typer.Option(None, help="models:/NAME@ALIAS, models:/NAME/VERSION or a model folder "
                                                   "(default: the two-stage champion, else the detector champion); a "
                                                   "segmenter pre-annotates polygons."),
    project: Optional[str] = typer.Option(None, help="Label Studio project title (default: 'wildtrain MODEL-NAME'; "
                                                     "created, or reused when it exists)."),
    seed: int = typer.Option(0, help="--strategy random: the draw's seed."),
    conf: Optional[float] = typer.Option(None, help="Score threshold of the boxes pre-annotated (default: params.yaml "
                                                    "predict.conf, 0.25)."),
) -> None:
    """Push the N images worth a review to Label Studio, the champion's boxes (a segmenter's: polygons) as
    pre-annotations tagged with its registry version (model_version)."""
    from wildtrain.annotate.push import push

    run(lambda p, root: push(p, root, source, n, strategy, model=model, project=project, seed=seed,
                                      conf=conf))


@annotate_app.command("pull")
def annotate_pull(
    name: str = typer.Option(..., "--name", help="The new source: data/source/NAME."),
    project: Optional[str] = typer.Option(None, help="Label Studio project title (default: the one push used for "
                                                     "the detector champion, 'wildtrain wildtrain-detector')."),
    beside: bool = typer.Option(False, "--beside", help="Only the reviewed images (Label Studio JSON + images), "
                                                        "instead of merged with the current source (the default)."),
    force: bool = typer.Option(False, "--force", help="Replace data/source/NAME when it holds a different dataset."),
) -> None:
    """Export the reviewed tasks and version them with `wildtrain data add` as data/source/NAME: merged with the
    current source (reviewed images replace their earlier boxes), or --beside it. `dvc repro` then retrains and the
    gate decides."""
    from wildtrain.annotate.pull import pull

    run(lambda p, root: pull(p, root, name, project=project, beside=beside, force=force))


if __name__ == "__main__":
    app(prog_name="wildtrain")  # `python -m wildtrain.cli` is the same program: its name in help, errors, completion
