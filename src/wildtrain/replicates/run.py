"""`wildtrain replicates`: run what is missing of N seeds of one param set (or two), then summarise."""

from __future__ import annotations

import subprocess
from pathlib import Path

from wildtrain import env, families
from wildtrain.errors import WildtrainError
from wildtrain.replicates import experiments, report, stats

REPORTS = Path("reports") / "replicates"


def _commit(root: Path) -> str:
    proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else "unknown"


def check_families(fams: list[str]) -> tuple[str, ...]:
    for f in fams:
        if f in families.OPT_IN:
            raise WildtrainError(f"family '{f}' is off the default pipeline (no dvc.yaml stages for replicates to "
                                 f"run; available: {', '.join(families.IN_PIPELINE)})")
        if f not in families.FAMILIES:
            raise WildtrainError(f"unknown family '{f}' (available: {', '.join(families.IN_PIPELINE)})")
    return tuple(f for f in families.IN_PIPELINE if f in fams)


def replicate(root: Path, pset: experiments.ParamSet, fams: tuple[str, ...], seeds: list[int]) -> dict:
    """Run the seeds not done yet (sequentially), then collect every seed's metrics and summarise them."""
    names, ran = {}, 0
    have = experiments.done(root)  # `dvc exp show` costs seconds: listed once, and once more if a seed ran
    for seed in seeds:
        name = experiments.find(have, pset, fams, seed)
        if name:
            print(f"replicates: seed {seed} of {pset.label}: done ({name})", flush=True)
        else:
            wanted = pset.experiment(fams, seed)
            name = experiments.run(root, pset, fams, seed, stale=wanted in have)
            ran += 1
        names[seed] = name
    if ran:
        have = experiments.done(root)
    values: dict[str, dict[int, float]] = {}
    for seed, name in names.items():
        if name not in have:
            raise WildtrainError(f"replicate {name} finished but `dvc exp show` does not list it")
        for f in fams:
            metrics = have[name].get(experiments.metrics_file(f))
            if metrics is None:
                raise WildtrainError(f"replicate {name}: {experiments.metrics_file(f)} missing from the experiment")
            for metric, v in report.scalars(f, metrics).items():
                values.setdefault(metric, {})[seed] = v
    return {"kind": "replicates", "param_set": {"label": pset.label, "overrides": list(pset.overrides),
                                                "key": pset.key},
            "families": list(fams), "seeds": seeds, "experiments": names, "ran": ran,
            "commit": _commit(root), "cpu": env._cpu_model(), "values": values, "summary": report.summarise(values)}


def replicates(root: Path, overrides: list[str], n: int, first_seed: int, fams: list[str],
               compare: tuple[str, str] | None = None, name: str | None = None) -> dict:
    """N replicates of the params (+ overrides); with `compare`, of two param sets and their paired difference."""
    if n < 1:
        raise WildtrainError(f"--n {n}: needs at least 1 replicate (2+ for an sd, 3+ to be useful)")
    fams_t = check_families(fams or list(families.IN_PIPELINE))
    seeds = list(range(first_seed, first_seed + n))
    common = experiments.split_overrides(overrides)
    if compare is None:
        pset = experiments.param_set(root, common)
        result = replicate(root, pset, fams_t, seeds)
        out = root / REPORTS / (name or f"rep-{pset.key}-{experiments.family_code(fams_t)}")
        files = report.write(out, result)
        print(report.summary_markdown(result))
    else:
        sa, sb = (experiments.param_set(root, common + experiments.split_overrides([c])) for c in compare)
        if sa.key == sb.key:
            raise WildtrainError(f"--compare: '{compare[0]}' and '{compare[1]}' give the same params")
        a, b = replicate(root, sa, fams_t, seeds), replicate(root, sb, fams_t, seeds)
        paired = {m: stats.paired(a["values"][m], b["values"][m])
                  for m in report.ordered(a["values"]) if m in b["values"]}
        result = {"kind": "compare", "a": a, "b": b, "method": report.PAIRED_METHOD, "paired": paired}
        out = root / REPORTS / (name or f"compare-{sa.key}-{sb.key}-{experiments.family_code(fams_t)}")
        files = report.write(out, result)
        print(report.paired_markdown(result))
    print("replicates: wrote " + ", ".join(str(f.relative_to(root)) for f in files), flush=True)
    return result
