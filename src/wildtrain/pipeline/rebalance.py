"""Stage `rebalance_crops`: embed the classifier's training crops, cluster them per class and decide how often
each is shown per epoch (wildtrain.data.rebalance); a report per class and cluster, and a 2-D projection plot.

Off by default (`rebalance.enabled: false`): the stage then writes a plan that changes nothing, without
embedding anything, so the default pipeline pays nothing for it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wildtrain.data import rebalance as rb
from wildtrain.io import atomic_path, write_json
from wildtrain.layout import REBALANCE_PLAN
from wildtrain.params import Params

REPORT, PROJECTION = "rebalance.json", "rebalance_projection"  # in Paths.metrics, Paths.plots (.json, .png)


def embed(files: list[Path], r, root: Path) -> np.ndarray:
    """L2-normalised features: the backbone's pooled features, or the crop itself at 16 x 16 px (`pixels`)."""
    from wildtrain.data.images import load_rgb

    if r.embed == "pixels":
        from PIL import Image

        rows = [np.asarray(Image.fromarray(load_rgb(f)).resize((16, 16), Image.BILINEAR), np.float32).ravel()
                for f in files]
        x = np.stack(rows) / 255.0
    else:
        import torch

        from wildtrain.families.classifier.backbones import feature_extractor
        from wildtrain.families.classifier.data import transforms

        torch.manual_seed(r.seed)  # a backbone without weights is its seeded initialisation
        weights = r.weights and str(Path(r.weights) if Path(r.weights).is_absolute() else root / r.weights)
        model, t = feature_extractor(r.backbone, weights or ""), transforms(r.imgsz)
        with torch.inference_mode():
            x = np.concatenate([model(torch.stack([t(image=load_rgb(f))["image"] for f in files[i:i + 64]]))
                                .float().numpy() for i in range(0, len(files), 64)])
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def projection_png(path: Path, rows: list[dict], class_names: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    for name in class_names:
        pts = [r for r in rows if r["class"] == name]
        if pts:
            ax.scatter([r["x"] for r in pts], [r["y"] for r in pts], s=[8 + 10 * r["copies"] for r in pts],
                       alpha=0.6, label=name)
    ax.set(xlabel="PC 1", ylabel="PC 2", title="Training crops (PCA of embeddings); size = showings per epoch")
    if rows:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "rebalancing off (rebalance.enabled: false)", ha="center", va="center",
                transform=ax.transAxes)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def rebalance(p: Params, root: Path) -> dict:
    from wildtrain.families.classifier.data import scan_classes, scan_split

    r = p.rebalance
    train_dir = root / p.paths.crops / "train"
    classes = scan_classes(train_dir)
    split = scan_split(train_dir, classes, require_all=True)
    labels = np.asarray(split.labels)
    rows: list[dict] = []
    if r.enabled:
        x = embed(split.files, r, root)
        copies, cluster = rb.plan(labels, x, r.clusters, r.target, r.max_copies, r.seed)
        from sklearn.decomposition import PCA

        xy = PCA(n_components=2, svd_solver="full").fit_transform(x) if len(x) > 2 else np.zeros((len(x), 2))
        rows = [{"x": round(float(a), 5), "y": round(float(b), 5), "class": classes[int(c)], "cluster": int(k),
                 "copies": int(n), "file": f.relative_to(train_dir).as_posix()}
                for (a, b), c, k, n, f in zip(xy, labels, cluster, copies, split.files)]
        plan = {"enabled": True, "copies": {row["file"]: row["copies"] for row in rows}}
    else:
        copies, cluster = np.ones(len(labels), int), np.zeros(len(labels), int)
        plan = {"enabled": False}
    out = root / p.paths.rebalance
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / REBALANCE_PLAN, plan)
    summary = {"enabled": r.enabled, "embed": r.embed if r.enabled else None, "crops": len(labels),
               "showings": int(copies.sum()), "per_class": rb.report(labels, copies, cluster, classes)}
    write_json(root / p.paths.metrics / REPORT, summary)
    write_json(root / p.paths.plots / f"{PROJECTION}.json", rows)
    projection_png(root / p.paths.plots / f"{PROJECTION}.png", rows, classes)
    line = ", ".join(f"{c} {v['before']}->{v['after']}" for c, v in summary["per_class"].items())
    print(f"rebalance: {'on' if r.enabled else 'off'}: {len(labels)} crops -> {summary['showings']} showings per epoch"
          + (f" ({line})" if r.enabled else ""))
    return summary
