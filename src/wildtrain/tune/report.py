"""What a study hands back: metrics/tune.json, the best params as a params.yaml snippet, two plots, and
the `dvc exp run -S ...` line that reruns the pipeline with them (so the winner becomes a DVC experiment).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from wildtrain.errors import WildtrainError
from wildtrain.evaluate.plots import _pyplot, save_png
from wildtrain.io import write_json, write_yaml
from wildtrain.params import Params
from wildtrain.tune.study import PARENT_RUN_ATTR, counts, redact

SUMMARY = "tune.json"
BEST_PARAMS = "tune_best_params.yaml"
PLOTS = "tune"  # metrics/tune/{history,importance}.{json,png}


def _set_value(v: Any) -> str:
    """How `dvc exp run -S key=value` spells a value (YAML)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v) if isinstance(v, float) else str(v)


def apply_command(best_params: dict[str, Any]) -> list[str]:
    """`dvc exp run -S ... register<suffix>`: up to the tuned family's last stage, so stale stages of the other
    families are not dragged into the tuned experiment."""
    from wildtrain import families
    from wildtrain.tune.space import SECTIONS

    cmd = ["dvc", "exp", "run"]
    for key, value in best_params.items():
        cmd += ["-S", f"{key}={_set_value(value)}"]
    section = next(iter(best_params)).split(".", 1)[0]
    return cmd + [f"register{families.get(SECTIONS[section]).suffix}"]


def history(study) -> list[dict]:
    """One row per COMPLETE trial in order, with the best value so far (DVC plot data)."""
    maximize = study.direction.name == "MAXIMIZE"
    rows, best = [], None
    for tr in study.get_trials(deepcopy=False):
        if tr.state.name != "COMPLETE":
            continue
        best = tr.value if best is None else (max if maximize else min)(best, tr.value)
        rows.append({"trial": tr.number, "value": tr.value, "best": best})
    return rows


def importance(study) -> tuple[list[dict], str | None]:
    """Param importances, or why there are none (needs 2+ completed trials with varied values)."""
    import optuna

    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(done) < 2:
        return [], f"needs at least 2 completed trials, have {len(done)}"
    try:
        imp = optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError, ZeroDivisionError) as e:
        return [], f"not computable ({' '.join(str(e).split())})"
    return [{"param": k, "importance": round(float(v), 6)} for k, v in imp.items()], None


def _plot_history(path: Path, rows: list[dict], metric: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["trial"] for r in rows], [r["value"] for r in rows], "o", label="trial")
    ax.step([r["trial"] for r in rows], [r["best"] for r in rows], where="post", label="best so far")
    ax.set(xlabel="trial", ylabel=metric, title="Optimization history")
    if rows:
        ax.legend(loc="best")
    save_png(fig, path)


def _plot_importance(path: Path, rows: list[dict], note: str | None) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.barh([r["param"] for r in rows][::-1], [r["importance"] for r in rows][::-1])
    ax.set(xlabel="importance", title="Param importance" + (f" ({note})" if note else ""))
    save_png(fig, path)


def write(p: Params, root: Path, study) -> dict:
    """Write every output from the storage (the source of truth), so any worker's trials are included."""
    t, out = p.tune, root / p.paths.metrics
    best = None
    try:
        bt = study.best_trial
        best = {"number": bt.number, "value": bt.value, "params": dict(bt.params)}
    except ValueError:  # no COMPLETE trial yet
        pass
    rows = history(study)
    imp, note = importance(study)
    summary = {"study": t.study, "storage": redact(t.storage), "metric": t.metric, "split": t.split,
               "direction": t.direction, "n_trials": t.n_trials, "trials": counts(study),
               "total": len(study.get_trials(deepcopy=False)), "best": best,
               "mlflow_parent_run_id": study.user_attrs.get(PARENT_RUN_ATTR),
               "importance": {r["param"]: r["importance"] for r in imp}, "importance_note": note,
               "apply": " ".join(apply_command(best["params"])) if best else None}
    plots = out / PLOTS
    write_json(plots / "history.json", rows)
    write_json(plots / "importance.json", imp)
    _plot_history(plots / "history.png", rows, t.metric)
    _plot_importance(plots / "importance.png", imp, note)
    if best:
        snippet: dict = {}
        for key, value in best["params"].items():
            section, name = key.split(".", 1)
            snippet.setdefault(section, {})[name] = value
        write_yaml(out / BEST_PARAMS, snippet)
    else:
        (out / BEST_PARAMS).unlink(missing_ok=True)
    write_json(out / SUMMARY, summary)
    return summary


def apply(root: Path, summary: dict) -> int:
    """Run the best trial through the DVC pipeline as an experiment (`dvc exp run -S ...`)."""
    if not summary.get("best"):
        raise WildtrainError(f"tune --apply: study '{summary['study']}' has no completed trial to apply")
    cmd = apply_command(summary["best"]["params"])
    print(f"tune: {' '.join(cmd)}", flush=True)
    return subprocess.call([sys.executable, "-m", "dvc", *cmd[1:]], cwd=root)
