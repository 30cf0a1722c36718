"""Which CPU kernel switches change the trained weights, and what the portable mode costs.

Each run is a fresh process (the libraries read their switches once, at first use) that trains one family with the
pipeline's own train stage on a small synthetic set, then evaluates with the evaluate stage, under one combination
of switches: ATen's ISA (ATEN_CPU_CAPABILITY), oneDNN's (ONEDNN_MAX_CPU_ISA), MKL's code branch (MKL_CBWR),
oneDNN and NNPACK on or off (torch.backends.mkldnn / nnpack) and OpenCV's IPP. It prints the weights' tensor hash,
the hash of the evaluation metrics (and, for the detector, of the predictions), CPU seconds and wall seconds of
training and of evaluation. Every run also evaluates one fixed reference model (the first run's, or --reference), so
the effect of the switches on inference alone shows too (--eval-only: that alone).

A combination whose hash does not move when oneDNN's or MKL's instruction set changes on this machine does not
depend on those libraries' CPU-specific code paths. Runs of the two modes timed against each other are interleaved
(A B A B ...) because other jobs share the cores; the ratio is of medians. Writes
benchmarks/results/cpu_kernels.json (--out).

    python benchmarks/cpu_kernels.py --families detector,classifier,segmenter --repeats 3
    python benchmarks/cpu_kernels.py --library-calls --out cpu_kernels_calls.json   # which family calls MKL
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, load_line, scratch_project, small_params  # noqa: E402

KERNEL_VARS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR", "WILDTRAIN_CPU_KERNELS")
PINS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
OFF = {"mkldnn": False, "nnpack": False}  # convolutions through ATen's im2col + MKL sgemm

# name -> (environment, torch/OpenCV switches). WILDTRAIN_CPU_KERNELS=native unless a variant names a mode, so that
# wildtrain itself sets nothing and the switches are exactly these.
VARIANTS = {
    "native": ({}, {}),
    "avx2 pins, MKL_CBWR=AVX2 (before)": ({**PINS, "MKL_CBWR": "AVX2"}, {}),
    "avx2 pins, MKL_CBWR=AUTO": ({**PINS, "MKL_CBWR": "AUTO"}, {}),
    "avx2 pins, MKL_CBWR=COMPATIBLE": ({**PINS, "MKL_CBWR": "COMPATIBLE"}, {}),
    "avx2 pins, MKL_CBWR=COMPATIBLE, oneDNN SSE41": ({**PINS, "MKL_CBWR": "COMPATIBLE",
                                                      "ONEDNN_MAX_CPU_ISA": "SSE41"}, {}),
    "portable (oneDNN+NNPACK off, MKL COMPATIBLE, ATen avx2)": ({**PINS, "MKL_CBWR": "COMPATIBLE"}, OFF),
    "portable, oneDNN SSE41": ({**PINS, "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41"}, OFF),
    "portable, oneDNN AVX512_CORE": ({**PINS, "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, OFF),
    "portable, MKL_CBWR=AVX2": ({**PINS, "MKL_CBWR": "AVX2"}, OFF),
    "portable, MKL_CBWR unset": (PINS, OFF),
    "portable, ATen avx512": ({**PINS, "MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "avx512"}, OFF),
    "portable, OpenCV IPP off": ({**PINS, "MKL_CBWR": "COMPATIBLE"}, {**OFF, "ipp": False}),
    "native, oneDNN+NNPACK off": ({}, OFF),
    "mode avx2 (WILDTRAIN_CPU_KERNELS)": ({"WILDTRAIN_CPU_KERNELS": "avx2"}, {}),
    "mode portable (WILDTRAIN_CPU_KERNELS)": ({"WILDTRAIN_CPU_KERNELS": "portable"}, {}),
}
BEFORE, PORTABLE = "avx2 pins, MKL_CBWR=AVX2 (before)", "portable (oneDNN+NNPACK off, MKL COMPATIBLE, ATen avx2)"
AFTER = "avx2 pins, MKL_CBWR=COMPATIBLE"
TIMED = (BEFORE, PORTABLE, AFTER)  # repeated, interleaved: the training-time ratios


def sizes(p, args):
    """The families' sections shortened to `args.epochs` epochs without data-loader processes (their CPU time would
    not be this process's), on CPU."""
    short = {"epochs": args.epochs, "workers": 0, "device": "cpu", "resume": "never"}
    return dataclasses.replace(p, classifier=dataclasses.replace(p.classifier, **short),
                               segmenter=dataclasses.replace(p.segmenter, **short),
                               evaluate=dataclasses.replace(p.evaluate, device="cpu"),
                               classifier_evaluate=dataclasses.replace(p.classifier_evaluate, device="cpu"),
                               segmenter_evaluate=dataclasses.replace(p.segmenter_evaluate, device="cpu"))


def make_params(root: Path, args):
    return sizes(small_params(root, images=args.images, imgsz=args.imgsz, epochs=args.epochs, crops=True, batch=16,
                              device="cpu"),
                 args)


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def scored(fam, predictor, p, root: Path) -> dict:
    """Evaluation through the family's evaluator: hashes of its metrics (and the detector's predictions file)."""
    t, c = time.perf_counter(), cpu_seconds()
    metrics = fam.evaluate(predictor, p, root, write_outputs=True)
    if isinstance(metrics, tuple):  # (metrics, the per-image table the intervals and the gate resample)
        metrics = metrics[0]
    out = {"eval_cpu_s": round(cpu_seconds() - c, 2), "eval_wall_s": round(time.perf_counter() - t, 2),
           "metrics_sha256": digest(metrics)[:16],
           "headline": {k: metrics[k] for k in ("map50", "f1_macro", "miou") if metrics.get(k) is not None}}
    preds = root / p.paths.predictions / f"{p.evaluate.split}.json"
    if fam.name == "detector" and preds.is_file():
        out["predictions_sha256"] = hashlib.sha256(preds.read_bytes()).hexdigest()[:16]
    return out


def child(args) -> None:
    """One run under the switches the parent put in the environment (and `--switches` for torch/OpenCV)."""
    switches = json.loads(args.switches)
    import torch

    torch.backends.mkldnn.enabled = switches.get("mkldnn", True)
    torch.backends.nnpack.set_flags(switches.get("nnpack", True))
    if not switches.get("ipp", True):
        import cv2

        cv2.ipp.setUseIPP(False)
    root = Path(args.root)
    os.chdir(root)
    from wildtrain import env, families
    from wildtrain.pipeline.train import train

    env.configure(root)
    p = make_params(root, args)
    fam = families.get(args.family)
    timing = {}
    fit = fam.train

    def timed_train(*a, **kw):  # the family's training alone, inside the real stage (MLflow etc. not counted)
        t, c = time.perf_counter(), cpu_seconds()
        try:
            return fit(*a, **kw)
        finally:
            timing.update(train_cpu_s=round(cpu_seconds() - c, 2), train_wall_s=round(time.perf_counter() - t, 2))

    fam.train = timed_train
    device = getattr(p, fam.evaluate_section).device
    ref_dir = root / f"reference_{args.family}"
    if args.eval_only:  # inference alone: the reference model under these switches
        card, own = {"hashes": {"tensors_sha256": ""}, "training": env.reproducibility(device)}, {}
        timing.update(train_cpu_s=0.0, train_wall_s=0.0)
    else:
        card = train(p, root, args.family)
        model_dir = fam.model_dir(p, root)
        own = scored(fam, fam.load(model_dir, device), p, root)
        if not ref_dir.exists():
            shutil.copytree(model_dir, ref_dir)
    ref = scored(fam, fam.load(ref_dir, device), p, root)
    if args.eval_only:
        own = {**ref, "metrics_sha256": ref["metrics_sha256"]}
    t = card["training"]
    print("RESULT " + json.dumps({
        "tensors_sha256": card["hashes"]["tensors_sha256"][:16], **timing, **own,
        "reference": {k: ref[k] for k in ref if k.endswith("sha256") or k in ("headline", "eval_cpu_s")},
        "recorded": {k: t.get(k) for k in t if k.startswith("repro.")},
        "torch_mkldnn": torch.backends.mkldnn.enabled, "torch_nnpack": torch._C._get_nnpack_enabled(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability()}), flush=True)


def one_step(family: str) -> None:
    """One training step (forward + backward) of the family's network at its default input size."""
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    if family == "segmenter":
        from wildtrain.families.segmenter.network import build

        model, x = build("resnet18", 5, 8, 4), torch.randn(8, 3, 160, 160)
    elif family == "classifier":
        from wildtrain.families.classifier.backbones import build

        model, x = build("resnet18", 5), torch.randn(32, 3, 64, 64)
    else:
        from ultralytics.nn.tasks import DetectionModel

        model, x = DetectionModel("yolo11n.yaml", nc=4, verbose=False), torch.randn(16, 3, 320, 320)

    def tensors(o):
        if torch.is_tensor(o):
            yield o
        elif isinstance(o, (list, tuple, dict)):
            for v in o.values() if isinstance(o, dict) else o:
                yield from tensors(v)

    sum(t.float().pow(2).mean() for t in tensors(model(x))).backward()


def library_calls(family: str) -> dict:
    """Which MKL routines and oneDNN convolution kernels one training step of the family calls, under the default
    pins (MKL_VERBOSE / ONEDNN_VERBOSE): a family that never calls MKL cannot differ by MKL's code branch."""
    env = {k: v for k, v in os.environ.items() if k not in KERNEL_VARS}
    env.update({**PINS, "MKL_CBWR": "COMPATIBLE", "MKL_VERBOSE": "1", "ONEDNN_VERBOSE": "1",
                "WILDTRAIN_CPU_KERNELS": "native"})
    out = subprocess.run([sys.executable, __file__, "--calls", family], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{family}: one step failed:\n{out.stderr[-3000:]}")
    calls: dict[str, dict[str, int]] = {"mkl": {}, "onednn": {}}
    for line in out.stdout.splitlines():
        name = line.split()[1].split("(")[0] if line.startswith("MKL_VERBOSE ") and "(" in line else ""
        if name.isupper():  # a routine (SGEMM, SGEMM_BATCH, ...), not MKL's version line
            calls["mkl"][name] = calls["mkl"].get(name, 0) + 1
        elif line.startswith("onednn_verbose,") and ",exec,cpu,convolution," in line:
            fields = line.split(",")
            i = fields.index("convolution")
            key = f"{fields[i + 1]} {fields[i + 2]}"  # implementation, propagation
            calls["onednn"][key] = calls["onednn"].get(key, 0) + 1
    return calls


def run_variant(args, root: Path, family: str, name: str) -> dict:
    environ, switches = VARIANTS[name]
    env = {k: v for k, v in os.environ.items() if k not in KERNEL_VARS}
    env.update({"WILDTRAIN_CPU_KERNELS": "native", **environ})
    cmd = [sys.executable, __file__, "--child", "--family", family, "--root", str(root), "--switches",
           json.dumps(switches), "--images", str(args.images), "--epochs", str(args.epochs), "--imgsz", str(args.imgsz)]
    cmd += ["--eval-only"] if args.eval_only else []
    t = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"{family} / {name} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    result = {"family": family, "variant": name, **json.loads(lines[-1].removeprefix("RESULT ")),
              "process_wall_s": round(time.perf_counter() - t, 1)}
    print(json.dumps(result), flush=True)
    return result


def summary(results: list[dict]) -> dict:
    """Per family: each variant's hashes (and whether they were the same in every run of it), and the median
    training / evaluation CPU seconds of the timed modes with their ratios to the mode before this change."""
    out = {}
    for family in dict.fromkeys(r["family"] for r in results):
        rows = [r for r in results if r["family"] == family]
        table = {}
        for name in dict.fromkeys(r["variant"] for r in rows):
            runs = [r for r in rows if r["variant"] == name]
            table[name] = {"runs": len(runs), "tensors": sorted({r["tensors_sha256"] for r in runs}),
                           "metrics": sorted({r["metrics_sha256"] for r in runs}),
                           "predictions": sorted({r.get("predictions_sha256", "") for r in runs} - {""}),
                           "reference_metrics": sorted({r["reference"]["metrics_sha256"] for r in runs}),
                           "reference_predictions": sorted({r["reference"].get("predictions_sha256", "")
                                                            for r in runs} - {""}),
                           "headline": runs[0]["headline"]}
            for key in ("train_cpu_s", "train_wall_s", "eval_cpu_s", "eval_wall_s"):
                table[name][key] = statistics.median(r[key] for r in runs)
        base = table.get(BEFORE)
        ratios = {}
        if base:
            for name in (PORTABLE, AFTER):
                if name in table:
                    ratios[name] = {k: round(table[name][k] / base[k], 3) for k in
                                    ("train_cpu_s", "train_wall_s", "eval_cpu_s", "eval_wall_s") if base[k]}
        out[family] = {"variants": table, "ratios_to_before": ratios}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="detector,classifier,segmenter")
    ap.add_argument("--images", type=int, default=48, help="synthetic 320 px images (about half train)")
    ap.add_argument("--imgsz", type=int, default=320, help="the detector's image size (and of the synthetic images)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3, help="runs of each timed mode (interleaved)")
    ap.add_argument("--variants", default="", help="variant names separated by ';' (default: all)")
    ap.add_argument("--out", default="cpu_kernels.json", help="file name under benchmarks/results/")
    ap.add_argument("--reference", default="", help="a model folder every run also evaluates (default: the first "
                                                    "run's model)")
    ap.add_argument("--eval-only", action="store_true", help="no training: only the reference model, evaluated")
    ap.add_argument("--library-calls", action="store_true", help="only list each family's MKL and oneDNN calls")
    ap.add_argument("--calls", help=argparse.SUPPRESS)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--family", help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    ap.add_argument("--switches", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    if args.calls:
        return one_step(args.calls)
    calls = {family: library_calls(family) for family in args.families.split(",")}
    if args.library_calls:
        print(json.dumps(calls, indent=2))
        (RESULTS / args.out).write_text(json.dumps({"cpu": cpu_line(), "library_calls": calls}, indent=2) + "\n")
        return

    root = scratch_project("wildtrain-bench-kernels-")
    from wildtrain.pipeline.convert import convert
    from wildtrain.pipeline.prepare import prepare

    p = make_params(root, args)
    prepare(p, root)
    convert(p, root)
    if args.reference:
        for family in args.families.split(","):
            shutil.copytree(args.reference, root / f"reference_{family}")
    elif args.eval_only:
        raise SystemExit("--eval-only needs --reference")
    chosen = [v for v in args.variants.split(";") if v] or list(VARIANTS)
    results = []
    for family in args.families.split(","):
        once = [v for v in chosen if v not in TIMED]
        timed = [v for v in TIMED if v in chosen]
        order = [v for r in range(args.repeats) for v in timed]
        # the untimed variants between the timed rounds: any slow phase of the machine falls on both modes
        for i, name in enumerate(order):
            results.append(run_variant(args, root, family, name))
            if (i + 1) % len(timed) == 0 and once:
                for name2 in once[:max(1, len(once) // args.repeats + 1)]:
                    results.append(run_variant(args, root, family, name2))
                once = once[max(1, len(once) // args.repeats + 1):]
        for name in once:
            results.append(run_variant(args, root, family, name))
    import platform

    report = {"cpu": cpu_line(), "python": platform.python_version(), "images": args.images, "imgsz": args.imgsz,
              "epochs": args.epochs,
              "repeats": args.repeats, "load": load_line(), "library_calls": calls, "summary": summary(results),
              "runs": results}
    out = RESULTS / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["summary"], indent=2))
    shutil.rmtree(root, ignore_errors=True)


def cpu_line() -> str:
    """Vendor, model name, family and model of this CPU (what decides its kernels and cache sizes)."""
    fields = {}
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    return (f"{fields.get('vendor_id')} {fields.get('model name')} (family {fields.get('cpu family')}, model "
            f"{fields.get('model')}), {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
