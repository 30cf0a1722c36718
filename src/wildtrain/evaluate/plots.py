"""PNG versions of the evaluation plots (DVC renders the JSON data; these are for MLflow and humans)."""

from __future__ import annotations

from pathlib import Path

from wildtrain.io import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path) -> None:
    """Write the figure atomically and free it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    _pyplot().close(fig)


def pr_curves_png(path: Path, recall: list[float], curves: dict[str, list[float]], title: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    for name, prec in curves.items():
        ax.plot(recall, prec, label=name)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    if curves:
        ax.legend(loc="lower left")
    save_png(fig, path)


def confusion_png(path: Path, rows: list[dict], labels: list[str]) -> None:
    import numpy as np

    plt = _pyplot()
    index = {n: i for i, n in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)), int)
    for r in rows:
        m[index[r["actual"]], index[r["predicted"]]] += 1
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.imshow(m, cmap="Blues")
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xlabel="predicted", ylabel="actual")
    ax.set_xticklabels(labels, rotation=45, ha="right")
    ax.set_yticklabels(labels)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", color="black" if m[i, j] < m.max() / 2 else "white")
    fig.tight_layout()
    save_png(fig, path)
