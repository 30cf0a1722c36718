"""`wildtrain models`: what the MLflow registry holds — registered models, their versions and aliases, and the gate
metric each version was registered with (with its 95% interval, and its gain over the champion of the day), read
from the version tags that registry.register_model writes. Read-only: it never creates a store or moves an alias."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from wildtrain.errors import WildtrainError
from wildtrain.evaluate.bootstrap import CI_SUFFIX
from wildtrain.registry import _one_line, check_store


@dataclass(frozen=True)
class Version:
    version: int
    aliases: list[str]
    registered: str  # UTC, to the minute
    run_id: str
    gate_metric: str | None = None  # None: registered by something other than the register stage
    value: float | None = None
    ci95: list[float] | None = None
    delta: float | None = None  # gain over the champion it was compared with (None: there was none)
    delta_ci95: list[float] | None = None
    decision: str | None = None  # champion | challenger, at registration


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "", "None") else None
    except ValueError:
        return None


def _interval(text: str | None) -> list[float] | None:
    try:
        pair = json.loads(text) if text not in (None, "", "None") else None
    except ValueError:
        return None
    return [float(x) for x in pair] if isinstance(pair, list) and len(pair) == 2 else None


def _version(mv, aliases: dict[str, list[str]]) -> Version:
    tags = mv.tags or {}
    metric = tags.get("gate_metric")
    when = datetime.fromtimestamp(mv.creation_timestamp / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M")
    common = dict(version=int(mv.version), aliases=sorted(aliases.get(str(mv.version), [])), registered=when,
                  run_id=mv.run_id or "")
    if not metric:
        return Version(**common)
    return Version(**common, gate_metric=metric, value=_number(tags.get(metric)),
                   ci95=_interval(tags.get(metric + CI_SUFFIX)), delta=_number(tags.get("gate_delta")),
                   delta_ci95=_interval(tags.get("gate_delta_ci95")), decision=tags.get("gate_decision"))


def _pages(search, **kwargs) -> list:
    out, token = [], None
    while True:
        page = search(max_results=100, page_token=token, **kwargs)
        out.extend(page)
        token = page.token
        if not token:
            return out


def listing(tracking_uri: str, name: str | None = None) -> dict[str, list[Version]]:
    """Registered model name -> its versions, newest first."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    check_store(tracking_uri, "wildtrain models", hint="")
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        models = _pages(client.search_registered_models)
        found = sorted(m.name for m in models)
        if name is not None and name not in found:
            raise WildtrainError(f"no registered model '{name}' in {tracking_uri} (registered: "
                                 f"{', '.join(found) or 'none'})")
        out = {}
        for m in sorted(models, key=lambda m: m.name):
            if name is not None and m.name != name:
                continue
            aliases: dict[str, list[str]] = {}
            for alias, version in (m.aliases or {}).items():
                aliases.setdefault(str(version), []).append(alias)
            escaped = m.name.replace("'", "\\'")
            versions = _pages(client.search_model_versions, filter_string=f"name = '{escaped}'")
            out[m.name] = sorted((_version(mv, aliases) for mv in versions), key=lambda v: -v.version)
        return out
    except MlflowException as e:
        raise WildtrainError(f"MLflow registry at {tracking_uri}: {_one_line(e)}") from None


def _span(value: float | None, ci: list[float] | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    fmt = "{:+.4f}" if signed else "{:.4f}"
    return fmt.format(value) + (f" [{fmt.format(ci[0])}, {fmt.format(ci[1])}]" if ci else "")


def render(models: dict[str, list[Version]], tracking_uri: str) -> str:
    """One block per registered model: a row per version."""
    if not models:
        return f"no registered models in {tracking_uri}"
    head = ("version", "aliases", "gate metric [95% CI]", "gain over champion [95% CI]", "decision", "registered (UTC)")
    blocks = [f"registry: {tracking_uri}"]
    for name, versions in models.items():
        rows = [head] + [(f"v{v.version}", ", ".join(v.aliases) or "-",
                          f"{v.gate_metric} {_span(v.value, v.ci95)}" if v.gate_metric else "-",
                          _span(v.delta, v.delta_ci95, signed=True) if v.gate_metric else "-",
                          v.decision or "-", v.registered) for v in versions]
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
        blocks.append("\n".join([f"\n{name} ({len(versions)} version{'s' if len(versions) != 1 else ''})"]
                                + ["  " + ln for ln in lines]))
    return "\n".join(blocks)


def as_json(models: dict[str, list[Version]], tracking_uri: str) -> str:
    return json.dumps({"tracking_uri": tracking_uri,
                       "models": {k: [asdict(v) for v in vs] for k, vs in models.items()}}, indent=2)
