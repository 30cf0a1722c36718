"""Plots diff as PNG files beside the report: BASE's and HEAD's PR curves on one axis, and the change in each
confusion matrix cell (HEAD minus BASE). DVC's own `dvc plots diff` renders HTML, which a PR comment cannot show."""

from __future__ import annotations

from pathlib import Path

from wildtrain.ci import git_files
from wildtrain.evaluate.plots import _pyplot, pr_curves_png, save_png

PR_CURVES = {"detector": "metrics/plots/pr_curve.json", "two_stage": "metrics/plots/two_stage_pr_curve.json"}
CONFUSIONS = {"detector": "metrics/plots/confusion.json", "two_stage": "metrics/plots/two_stage_confusion.json",
              "classifier": "metrics/plots/classifier_confusion.json"}


def _head(root: Path, path: str):
    import json

    f = root / path
    try:
        return json.loads(f.read_text()) if f.is_file() else None
    except (OSError, ValueError):
        return None


def pr_curve_diff(out: Path, family: str, base_rows: list, head_rows: list, base: str) -> Path:
    recall = [r["recall"] for r in head_rows]
    by_recall = {round(r["recall"], 6): r["precision"] for r in base_rows}
    curves = {f"BASE {base[:8]}": [by_recall.get(round(x, 6), float("nan")) for x in recall],
              "HEAD": [r["precision"] for r in head_rows]}
    pr_curves_png(out, recall, curves, f"{family}: precision-recall at IoU 0.5, BASE vs HEAD")
    return out


def confusion_diff(out: Path, family: str, base_rows: list, head_rows: list) -> Path:
    import numpy as np

    labels = sorted({r[k] for r in base_rows + head_rows for k in ("actual", "predicted")})
    index = {n: i for i, n in enumerate(labels)}
    diff = np.zeros((len(labels), len(labels)), int)
    for rows, sign in ((head_rows, 1), (base_rows, -1)):
        for r in rows:
            diff[index[r["actual"]], index[r["predicted"]]] += sign
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    lim = max(1, int(abs(diff).max()))
    ax.imshow(diff, cmap="RdBu", vmin=-lim, vmax=lim)
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xlabel="predicted", ylabel="actual",
           title=f"{family}: confusion, HEAD minus BASE (counts)")
    ax.set_xticklabels(labels, rotation=45, ha="right")
    ax.set_yticklabels(labels)
    for i in range(len(labels)):
        for j in range(len(labels)):
            if diff[i, j]:
                ax.text(j, i, f"{diff[i, j]:+d}", ha="center", va="center")
    fig.tight_layout()
    save_png(fig, out)
    return out


def write(root: Path, base: str, folder: Path, stem: str) -> list[Path]:
    """Every plot both sides have, as `<stem>-<family>-<kind>.png` in `folder`; the paths written."""
    written = []
    for family, path in PR_CURVES.items():
        b, h = git_files.json_at(root, base, path), _head(root, path)
        if isinstance(b, list) and isinstance(h, list) and b and h:
            written.append(pr_curve_diff(folder / f"{stem}-{family}-pr_curve.png", family, b, h, base))
    for family, path in CONFUSIONS.items():
        b, h = git_files.json_at(root, base, path), _head(root, path)
        if isinstance(b, list) and isinstance(h, list) and (b or h):
            written.append(confusion_diff(folder / f"{stem}-{family}-confusion.png", family, b, h))
    return written
