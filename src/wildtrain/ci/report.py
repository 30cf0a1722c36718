"""reports/ci.md: what a reviewer of a model change needs, in the order they ask it: what ran and why, which params
changed, what it did to the metrics (against noise), what the registry would do, on which CPU."""

from __future__ import annotations

from pathlib import Path

from wildtrain.ci.noise import FAMILY_FILES, Row

MARKER = "<!-- wildtrain-ci-report -->"  # the workflow finds its own earlier PR comment by this line


def _f(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def _signed(v) -> str:
    return "—" if v is None else f"{v:+.4f}"


def _ci(ci) -> str:
    return "—" if not ci else f"[{ci[0]:.4f}, {ci[1]:.4f}]"


def stages_section(r: dict) -> list[str]:
    lines = ["## Stages", ""]
    if r["dry_run"]:
        lines += ["Dry run (`--dry-run`): the plan only, nothing was run.", ""]
    if not r["stale"] and not r["ran"] and not r["restored"]:
        return lines + ["**Nothing to rerun**: every stage's deps and params match HEAD's dvc.lock"
                        + (" (outputs pulled from the remote)." if r["remote"] else "."), ""]
    lines += ["| stage | what happened | why |", "|---|---|---|"]
    for stage in r["order"]:
        how = ("would run" if r["dry_run"] else "ran") if stage in r["ran"] else "restored from the run-cache"
        why = r["stale"].get(stage) or r["downstream"].get(stage) or ["upstream outputs changed"]
        lines.append(f"| `{stage}` | {how} | {'; '.join(why)} |")
    kept = [s for s in r["all_stages"] if s not in r["order"]]
    if kept:
        lines += ["", f"Not rerun (unchanged{', pulled' if r['remote'] else ''}): "
                      + ", ".join(f"`{s}`" for s in kept) + "."]
    return lines + [""]


def params_section(r: dict) -> list[str]:
    lines = [f"## Params vs BASE", ""]
    changed = [(f"{k}" if f == "params.yaml" else f"{f}:{k}", v) for f, keys in r["params_diff"].items()
               for k, v in keys.items()]
    if not changed:
        return lines + ["No param differs from BASE's.", ""]
    lines += ["| param | BASE | HEAD |", "|---|---|---|"]
    lines += [f"| `{k}` | {_f(v.get('old'))} | {_f(v.get('new'))} |" for k, v in changed]
    return lines + [""]


def _row(row: Row, labelled: bool) -> str:
    label = row.label if labelled or row.label in ("new", "gone") else "baseline stale"
    strong = f"**{label}**" if label == "beyond noise" else label
    return (f"| {row.family} | `{row.metric}` | {_f(row.base)} | {_f(row.head)} | {_signed(row.delta)} | "
            f"{_ci(row.head_ci)} | {'±' + format(row.band, '.4f') if row.band is not None else '—'} | {strong} |")


def _replicates_note(rep: dict) -> str:
    made = f"the seed replicates `{rep['path']}`, {len(rep.get('seeds', []))} seeds on {rep.get('cpu', '?')}"
    if rep.get("match") == "family params":
        others = [f for f in FAMILY_FILES if f not in rep["matched"]]
        return (f"{made}, made at `{str(rep.get('commit', '?'))[:8]}` with the same params for "
                f"{', '.join(rep['matched'])} (every key their stages read)"
                + (f"; test-set bands only for {', '.join(others)}" if others else ""))
    return made


def metrics_section(r: dict) -> list[str]:
    lines = ["## Metrics vs BASE", ""]
    rows: list[Row] = r["rows"]
    if not rows:
        return lines + [r["config"]["note"] if r["config"].get("note") else "No evaluation metrics.", ""]
    rep = r["replicates"]
    lines += ["Each delta (HEAD − BASE) is set against its noise band, the wider of: the test-set band "
              "(bootstrap 95% intervals of BASE and HEAD, `sqrt(h_base² + h_head²)`) and the seed band "
              "(1.96·√2·sd of " + (_replicates_note(rep) if rep else "seed replicates; none match BASE's "
                                     "param set, so test-set bands only") + "). docs/how-to/ci-reruns.md says how to read them.", ""]
    header = ["| family | metric | BASE | HEAD | delta | HEAD 95% CI | noise band | |",
              "|---|---|---:|---:|---:|---|---:|---|"]
    labelled = not r["config"]["stale"]
    main = [x for x in rows if (x.test_band is not None and "." not in x.metric) or x.label == "beyond noise"]
    rest = [x for x in rows if x not in main and x.delta != 0]
    lines += header + [_row(x, labelled) for x in main]
    beyond = [x for x in rows if x.label == "beyond noise"]
    lines += ["", f"{len(beyond)} of {sum(1 for x in rows if x.band is not None)} banded metrics beyond noise."
              if labelled else r["config"]["note"]]
    if rest:
        lines += ["", f"<details><summary>{len(rest)} more metrics that changed (per class, or without a band)"
                      "</summary>", ""] + header + [_row(x, labelled) for x in rest] + ["", "</details>"]
    return lines + [""]


def registry_section(r: dict) -> list[str]:
    lines = ["## Registry", ""]
    if r["tracking"].startswith("this checkout") and any(s.startswith("register") for s in r["ran"]):
        lines += ["The register stages ran against this checkout's own MLflow store (no team server here), whose "
                  "champion is whatever this checkout registered before; the gate against BASE's model is the "
                  "decision to read.", ""]
    for family, g in r["gates"].items():
        if g is None:
            continue
        lines.append(f"- **{family}**, gate vs BASE's model: {g['reason']}")
    for family, rec in r["registered"].items():
        stage = "register" if family == "detector" else f"register_{family}"
        where = r["tracking"] if stage in r["ran"] else "not rerun: the record committed with HEAD"
        lines.append(f"- **{family}**, register stage ({where}): v{rec.get('version')} "
                     f"{rec.get('decision')} — {rec.get('reason')}")
    if len(lines) == 2:
        lines.append("No register record at HEAD.")
    return lines + [""]


CPU_KEYS = ("cpu", "cpu_kernels", "torch_threads", "cpu_capability", "onednn", "nnpack", "mkl_cbwr", "bit_exact")


def cpu_section(r: dict) -> list[str]:
    lines = ["## CPU and kernels", "", "| model | side | " + " | ".join(CPU_KEYS) + " |",
             "|---|---|" + "---|" * len(CPU_KEYS)]
    runner = r["runner"]
    lines.append("| (this run's machine) | runner | " + " | ".join(_f(runner.get(k)) for k in CPU_KEYS) + " |")
    for family, sides in r["training"].items():
        for side in ("base", "head"):
            rec = sides[side]
            cells = " | ".join(_f(rec.get(k)) if rec else ("not recorded" if k == "cpu" else "") for k in CPU_KEYS)
            lines.append(f"| {family} | {side.upper()} | {cells} |")
    differ = [f for f, s in r["training"].items() if s["base"] and s["head"] and
              (s["base"].get("cpu"), s["base"].get("cpu_kernels")) != (s["head"].get("cpu"), s["head"].get("cpu_kernels"))]
    if differ:
        lines += ["", f"Trained on another CPU or kernel mode than BASE: {', '.join(differ)}. Even without a change "
                      "such a rerun differs by about the seed spread (README \"Reproducibility\")."]
    return lines + [""]


def markdown(r: dict) -> str:
    head, base = r["head"], r["base"]
    lines = [MARKER, f"# CI rerun: HEAD `{head[:8]}` vs BASE `{base[:8]}` ({r['base_ref']})", "",
             f"**Config.** {r['config']['note']}.", "",
             f"**Cache.** {r['remote_note']}", ""]
    for section in (stages_section, params_section, metrics_section, registry_section, cpu_section):
        lines += section(r)
    if r["plots"]:
        lines += ["## Plots", "", "PNG files beside this report (in the CI run's `ci-report` artifact):", ""]
        lines += [f"- `{p}`" for p in r["plots"]] + [""]
    return "\n".join(lines)


def write(path: Path, r: dict) -> None:
    from wildtrain.io import write_text

    write_text(path, markdown(r))
