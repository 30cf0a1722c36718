"""wildtrain: a DVC-driven, reproducible training pipeline for wildlife detection.

The Python API lives in `wildtrain.api` (docs/how-to/python-api.md). `load`, `predict`, `train` and `register`
are also reachable here, imported on first use so that `import wildtrain` stays cheap. (`evaluate` and `tune` are
the names of subpackages here: use `wildtrain.api.evaluate` and `wildtrain.api.tune`.)"""

__version__ = "0.1.0"

_API = ("load", "predict", "train", "register", "WildtrainError")


def __getattr__(name: str):
    if name in _API or name == "api":
        import importlib

        api = importlib.import_module("wildtrain.api")
        return api if name == "api" else getattr(api, name)
    raise AttributeError(f"module 'wildtrain' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API, "api"])
