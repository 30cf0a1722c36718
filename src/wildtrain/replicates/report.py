"""What replicates hand back: per-metric values by seed and their summary (JSON, a Markdown table, a PNG), and for
two param sets the paired difference per metric with its interval and verdict."""

from __future__ import annotations

from pathlib import Path

from wildtrain.evaluate.plots import _pyplot, save_png
from wildtrain.io import write_json, write_text
from wildtrain.replicates import stats

# Shown first in tables and drawn in the plots (the gate metrics and their companions), where present.
HEADLINE = ("detector.map50", "detector.map50_95", "two_stage.map50", "two_stage.map50_95", "classifier.f1_macro",
            "classifier.accuracy", "segmenter.miou", "segmenter.dice_macro")
PAIRED_METHOD = ("paired over seeds (seed k of A minus seed k of B); 95% Student t-interval of the mean difference "
                 "(n - 1 degrees of freedom); 'within noise' when it covers 0. Training-seed noise only: the test "
                 "images are the same in A and B.")


def scalars(family: str, metrics: dict) -> dict[str, float]:
    """Top-level numbers of an eval file as '<family>.<key>' (lists such as *_ci95 and nested tables skipped)."""
    return {f"{family}.{k}": float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def ordered(metrics) -> list[str]:
    names = set(metrics)
    return [m for m in HEADLINE if m in names] + sorted(names - set(HEADLINE))


def summarise(values: dict[str, dict[int, float]]) -> dict[str, dict]:
    """metric -> {seed: value} becomes metric -> n, mean, sd, min, max."""
    return {m: stats.summary([values[m][s] for s in sorted(values[m])]) for m in ordered(values)}


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.4f}"


def summary_markdown(result: dict) -> str:
    seeds = ", ".join(str(s) for s in result["seeds"])
    lines = [f"# Seed replicates: {result['param_set']['label']}", "",
             f"Param set `{result['param_set']['key']}`, seeds {seeds}, families {', '.join(result['families'])}; "
             f"commit {result['commit'][:12]}, CPU {result['cpu']}. sd is the sample sd (n - 1) over seeds.", "",
             "| metric | mean | sd | min | max | n |", "|---|---:|---:|---:|---:|---:|"]
    for m, s in result["summary"].items():
        lines.append(f"| {m} | {_fmt(s['mean'])} | {_fmt(s['sd'])} | {_fmt(s['min'])} | {_fmt(s['max'])} | {s['n']} |")
    return "\n".join(lines) + "\n"


def paired_markdown(result: dict) -> str:
    a, b = result["a"], result["b"]
    lines = [f"# Paired comparison: A = {a['param_set']['label']} vs B = {b['param_set']['label']}", "",
             f"A = `{a['param_set']['key']}`, B = `{b['param_set']['key']}`, commit {a['commit'][:12]}, CPU {a['cpu']}.",
             f"Method: {PAIRED_METHOD}", "",
             "| metric | A mean | B mean | A − B | sd of A − B | 95% interval | verdict | n |",
             "|---|---:|---:|---:|---:|---|---|---:|"]
    for m, d in result["paired"].items():
        ci = "–" if d["ci95"] is None else f"[{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]"
        mean = "–" if d["mean"] is None else f"{d['mean']:+.4f}"
        lines.append(f"| {m} | {_fmt(a['summary'][m]['mean'])} | {_fmt(b['summary'][m]['mean'])} | {mean} | "
                     f"{_fmt(d['sd'])} | {ci} | {d['verdict']} | {d['n']} |")
    return "\n".join(lines) + "\n"


def _plotted(metrics) -> list[str]:
    shown = [m for m in HEADLINE if m in metrics]
    return shown or ordered(metrics)[:8]


def summary_png(path: Path, result: dict) -> None:
    """Per metric: each seed's value (labelled), the mean as a line and mean ± sd as a band."""
    plt = _pyplot()
    names = _plotted(result["values"])
    fig, axes = plt.subplots(1, len(names), figsize=(max(2.6 * len(names) + 0.6, 6.0), 3.6), squeeze=False)
    for ax, m in zip(axes[0], names):
        by_seed, s = result["values"][m], result["summary"][m]
        seeds = sorted(by_seed)
        ax.scatter(range(len(seeds)), [by_seed[k] for k in seeds], color="tab:blue", zorder=3)
        for i, k in enumerate(seeds):
            ax.annotate(f"s{k}", (i, by_seed[k]), textcoords="offset points", xytext=(5, 2), fontsize=7)
        ax.axhline(s["mean"], color="black", lw=1)
        if s["sd"] is not None:
            ax.axhspan(s["mean"] - s["sd"], s["mean"] + s["sd"], color="tab:blue", alpha=0.15, lw=0)
        sd = "" if s["sd"] is None else f" ± {s['sd']:.3f}"
        ax.set_title(f"{m}\n{s['mean']:.3f}{sd}", fontsize=8)
        ax.set_xticks([])
        ax.set_xlim(-0.5, len(seeds) - 0.5)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{result['param_set']['label']}\nseeds (points), mean (line), mean ± sd (band)", fontsize=8)
    fig.tight_layout()
    save_png(fig, path)


def paired_png(path: Path, result: dict) -> None:
    """Per metric: A and B side by side, the same seed joined by a line, mean ± sd as error bars; verdict above."""
    plt = _pyplot()
    a, b = result["a"], result["b"]
    names = [m for m in _plotted(result["paired"]) if m in a["values"] and m in b["values"]]
    fig, axes = plt.subplots(1, len(names), figsize=(max(2.6 * len(names) + 0.6, 6.0), 3.8), squeeze=False)
    for ax, m in zip(axes[0], names):
        for k in result["paired"][m]["seeds"]:
            ax.plot([0, 1], [a["values"][m][k], b["values"][m][k]], color="grey", lw=0.8, marker="o", ms=4)
        for x, side in ((0, a), (1, b)):
            s = side["summary"][m]
            ax.errorbar([x + 0.12], [s["mean"]], yerr=[s["sd"] or 0.0], fmt="s", color="tab:red", capsize=3, ms=4)
        ax.set_xticks([0, 1], ["A", "B"])
        ax.set_xlim(-0.4, 1.4)
        d = result["paired"][m]
        ci = "" if d["ci95"] is None else f" [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
        ax.set_title(f"{m}\nA − B {d['mean']:+.3f}{ci}\n{d['verdict']}", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"A = {a['param_set']['label']}\nB = {b['param_set']['label']}\nseeds (grey, paired), "
                 f"mean ± sd (red)", fontsize=8)
    fig.tight_layout()
    save_png(fig, path)


def write(out: Path, result: dict) -> list[Path]:
    """<out>.json, <out>.md and <out>.png (atomic writes)."""
    files = [out.with_suffix(".json"), out.with_suffix(".md"), out.with_suffix(".png")]
    paired = "paired" in result
    write_json(files[0], result)
    write_text(files[1], paired_markdown(result) if paired else summary_markdown(result))
    (paired_png if paired else summary_png)(files[2], result)
    return files
