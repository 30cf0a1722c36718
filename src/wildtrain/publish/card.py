"""The model card (Markdown), generated from the run's own records: the model folder's card (model.json), the
evaluation metrics (metrics/eval*.json), the dataset statistics (metrics/data.json), the training params and the
export parity report. Numbers are printed as recorded, rounded to DIGITS decimals (a test checks them against
metrics/); the intended use and known limits are derived from the same facts, not written by hand."""

from __future__ import annotations

from wildtrain.evaluate.bootstrap import CI_SUFFIX, HEADLINE, HIGH, LOW
from wildtrain.contract import Exported, ModelCard
from wildtrain.publish.parity import summary
from wildtrain.publish.release import Context, Release
from wildtrain.publish.stac import unavailable
from wildtrain.tasks import task_of

DIGITS = 4
WEAK = 0.5  # a class scoring below this (AP50, F1, IoU) is named among the known limits
SMALL_TEST = 100  # fewer held-out images/crops than this: metrics are noted as uncertain
SHORT_TRAINING = 10  # epochs


def fmt(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{round(value, DIGITS):.{DIGITS}f}"
    return str(value)


def table(header: list[str], rows: list[list], show=fmt) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
        ["| " + " | ".join(show(v) for v in row) + " |" for row in rows]


def overall(metrics: dict) -> dict:
    """The headline numbers: every numeric top-level metric (its `_ci95_low` / `_high` copies go in the interval
    column, not in rows of their own)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
            and not k.endswith((LOW, HIGH))}


def interval(value) -> str:
    """A `<metric>_ci95` [low, high] as `[0.5901, 0.6934]`; — where there is none."""
    if not isinstance(value, list) or len(value) != 2 or None in value:
        return "—"
    return f"[{fmt(float(value[0]))}, {fmt(float(value[1]))}]"


def per_class_columns(per_class: dict) -> list[str]:
    """Numeric per-class values, each followed by its interval column (`ap50 95% CI`) where it has one."""
    cols: list[str] = []
    for values in per_class.values():
        for k, v in values.items():
            if k not in cols and (v is None or isinstance(v, (int, float))) and not isinstance(v, bool):
                cols.append(k)
            if k.endswith(CI_SUFFIX) and k not in cols:
                cols.insert(cols.index(k[:-len(CI_SUFFIX)]) + 1 if k[:-len(CI_SUFFIX)] in cols else len(cols), k)
    return cols


def column_title(key: str) -> str:
    return f"{key[:-len(CI_SUFFIX)]} 95% CI" if key.endswith(CI_SUFFIX) else key


def cell(key: str, value) -> str:
    return interval(value) if key.endswith(CI_SUFFIX) else fmt(value)


def _class_counts(card: ModelCard, split: dict) -> dict:
    if task_of(card).data_unit == "crops" and "crops" in split:
        return split["crops"]
    return split.get("classes", {})


def data_section(card: ModelCard, release: Release, data: dict | None) -> list[str]:
    lines = ["## Data", "",
             f"- Source: `{release.data_source}` (DVC md5 `{release.data_source_md5}`)",
             f"- Dataset hash (sha256 over images and annotations): `{release.dataset_hash}`"]
    if not data:
        return lines + ["- Split statistics: not recorded with this model (metrics/data.json of another dataset)", ""]
    splits = [s for s in ("train", "val", "test") if s in data]
    classes: list[str] = []
    for s in splits:
        classes += [c for c in _class_counts(card, data[s]) if c not in classes]
    unit = task_of(card).data_unit
    rows = [[s, data[s].get("images"), sum(_class_counts(card, data[s]).values()),
             *[_class_counts(card, data[s]).get(c, 0) for c in classes]] for s in splits]
    return lines + [f"- Images: {data.get('images')}, boxes: {data.get('boxes')}", "",
                    f"{unit.capitalize()} per class and split:", "",
                    *table(["split", "images", unit, *classes], rows), ""]


def training_section(card: ModelCard, context: Context) -> list[str]:
    t = card.training
    lines = ["## Training", ""]
    if card.components:
        for role in card.components:
            part = t.get(role, {})
            lines.append(f"- {role}: {part.get('epochs_completed', '?')} epochs, MLflow run "
                         f"`{part.get('mlflow_run_id', '?')}`")
    else:
        lines += [f"- Epochs completed: {t.get('epochs_completed', '?')}" + (" (resumed)" if t.get("resumed") else ""),
                  f"- MLflow run: `{t.get('mlflow_run_id', '?')}`"]
    lines += [f"- Git commit: `{t.get('git_commit', '?')}`" + (" (uncommitted changes)" if t.get("git_dirty") == "true"
                                                                else ""),
              f"- Reproducibility: {t.get('repro.bit_exact', 'not recorded')}"]
    if t.get("repro.cpu_kernels"):  # docs/explanation/reproducibility.md: what decides the bits on a CPU
        lines.append(f"- CPU kernels: `{t['repro.cpu_kernels']}` on {t.get('repro.cpu', '?')}, "
                     f"{t.get('repro.torch_threads', '?')} threads; ATen {t.get('repro.cpu_capability', '?')}, "
                     f"oneDNN {t.get('repro.onednn', '?')}, NNPACK {t.get('repro.nnpack', '?')}, "
                     f"MKL_CBWR {t.get('repro.mkl_cbwr', '?')}")
    lines.append("")
    if context.hyperparameters:
        lines += ["Training parameters:", "",
                  *table(["param", "value"], [[k, v] for k, v in sorted(context.hyperparameters.items())],
                        lambda v: f"`{v}`"), ""]
    return lines


def metrics_section(metrics: dict | None, source: str) -> list[str]:
    if not metrics:
        return ["## Evaluation", "", "Not evaluated with this model's records.", ""]
    b = metrics.get("bootstrap") or {}
    how = (f" 95% intervals: bootstrap over the {b.get('units')} test {b.get('unit', 'image')}s "
           f"({b.get('resamples')} resamples, seed {b.get('seed')}); a difference inside them is noise."
           if b else "")
    lines = ["## Evaluation", "",
             f"On the held-out `{metrics.get('split', '?')}` split ({source}; evaluation hash "
             f"`{metrics.get('evaluation_hash', '?')}`).{how}", "",
             *table(["metric", "value", "95% interval"],
                    [[k, fmt(v), interval(metrics.get(k + CI_SUFFIX))] for k, v in overall(metrics).items()], str), ""]
    per_class = metrics.get("per_class") or {}
    if per_class:
        cols = per_class_columns(per_class)
        lines += ["Per class:", "", *table(["class", *[column_title(k) for k in cols]],
                                           [[c, *[cell(k, v.get(k)) for k in cols]] for c, v in per_class.items()],
                                           str), ""]
    return lines


def exports_section(exported: Exported, parity: dict, dlpk_reason: str | None) -> list[str]:
    lines = ["## Exports", ""]
    checked = summary(parity)
    lines += [f"- {line} (checked against PyTorch on held-out images)" for line in checked] or \
             ["- No ONNX, TorchScript or OpenVINO export."]
    lines += [f"- {fmt_}: not available — {why}" for fmt_, why in unavailable(exported).items()]
    lines.append("- Esri .dlpk: " + ("included (ONNX + an onnxruntime inference function)" if dlpk_reason is None
                                    else f"not available — {dlpk_reason}"))
    return lines + [""]


def weak_classes(metrics: dict | None) -> list[str]:
    out = []
    for name, values in ((metrics or {}).get("per_class") or {}).items():
        for key in ("ap50", "f1", "iou"):
            v = values.get(key)
            if isinstance(v, (int, float)) and v < WEAK:
                out.append(f"{name} ({key} {fmt(float(v))})")
                break
    return out


def limits(card: ModelCard, release: Release, context: Context, exported: Exported) -> list[str]:
    m, t = context.metrics or {}, card.training
    out = []
    if release.data_source == "synthetic":
        out.append("Trained and evaluated on synthetic scenes (wildtrain's built-in generator), not real survey "
                   "imagery: its numbers say nothing about real images.")
    tested = m.get("images", m.get("crops"))
    if isinstance(tested, int) and tested < SMALL_TEST:
        spread = [f"{k} {fmt(m[k])} {interval(m[k + CI_SUFFIX])}" for k in HEADLINE
                  if isinstance(m.get(k), float) and m.get(k + CI_SUFFIX)]
        out.append(f"Evaluated on only {tested} held-out {'crops' if 'crops' in m else 'images'}: the metrics are "
                   f"uncertain" + (f" ({', '.join(spread)}, 95% intervals)." if spread else " by several points."))
    epochs = t.get("epochs_completed")
    if isinstance(epochs, int) and epochs < SHORT_TRAINING:
        out.append(f"Trained for only {epochs} epochs.")
    weak = weak_classes(context.metrics)
    if weak:
        out.append(f"Weak on: {', '.join(weak)}.")
    out.append(f"Knows only these classes: {', '.join(card.class_names)}. An animal of another species is missed or "
               f"given one of these labels.")
    out += task_of(card).limits(card)
    for fmt_, why in unavailable(exported).items():
        out.append(f"No {fmt_} export: {why}.")
    if t.get("git_dirty") == "true":
        out.append("Trained from a work tree with uncommitted changes: the commit alone does not reproduce it.")
    return out


def render(card: ModelCard, exported: Exported, parity: dict, release: Release, context: Context,
           dlpk_reason: str | None) -> str:
    registered = (f"`{release.model_uri}`" + (f" (aliases: {', '.join(release.aliases)})" if release.aliases else "")
                  if release.model_uri else "not registered")
    lines = [f"# {release.label} — {card.architecture} ({card.task})", "",
             *table(["", ""], [["Family / framework", f"{card.family} / {card.framework}"],
                               ["Registered", registered],
                               ["Classes", ", ".join(card.class_names)],
                               ["Input", f"RGB, {card.input.get('size')} px"],
                               ["Weights sha256", card.hashes.get("weights_sha256", "see parts")],
                               ["Published", release.created]]), "",
             "## Intended use", "", task_of(card).intended_use(card), "",
             "## Known limits", "", *[f"- {line}" for line in limits(card, release, context, exported)], "",
             *data_section(card, release, context.data),
             *training_section(card, context),
             *metrics_section(context.metrics, context.metrics_source or "metrics/"),
             *exports_section(exported, parity, dlpk_reason)]
    return "\n".join(lines).rstrip() + "\n"
