"""Shared entry for stage scripts and CLI commands: offline env, params, one-line errors, exit codes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from wildtrain import env
from wildtrain.errors import WildtrainError


def missing_module(e: ModuleNotFoundError) -> str:
    return (f"error: {sys.executable} cannot import '{e.name}': run the pipeline with the project's Python "
            f"(source .venv/bin/activate, or make repro / make exp)")


def run(stage: Callable, *args: str, params_file: str = "params.yaml", params_optional: bool = False) -> None:
    """Call stage(params, root, *args); a WildtrainError is printed as one line and exits 2 (no traceback).

    `params_optional`: outside a project (no dvc.yaml here or above), or without its params file, the stage gets
    the built-in defaults (params.py) instead of an error — for commands users run anywhere (`predict`)."""
    root = env.project_root()
    try:
        env.configure()  # outside a project: the user cache; an unknown WILDTRAIN_CPU_KERNELS is one line too
        from wildtrain import params as params_mod

        path = Path(root) / params_file
        if params_optional and not (env.find_project(root) and path.is_file()):
            p = params_mod.Params()
        else:
            p = params_mod.load(path)
        stage(p, root, *args)
    except WildtrainError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except ModuleNotFoundError as e:
        print(missing_module(e), file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:
        mlflow_errors = sys.modules.get("mlflow.exceptions")
        if mlflow_errors is None or not isinstance(e, mlflow_errors.MlflowException):
            raise
        # a tracking server that is down or refuses: one line, not a traceback
        print(f"error: MLflow ({env.tracking_uri(Path(root))}): {' '.join(str(e).split())[:300]}; rerun once the "
              f"tracking server answers", file=sys.stderr)
        sys.exit(2)
