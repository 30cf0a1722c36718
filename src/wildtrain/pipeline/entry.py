"""Shared entry for stage scripts and CLI commands: offline env, params, one-line errors, exit codes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from wildtrain import env
from wildtrain.errors import WildtrainError


def run(stage: Callable, params_file: str = "params.yaml") -> None:
    """Call stage(params, root); a WildtrainError is printed as one line and exits 2 (no traceback)."""
    root = env.configure()
    try:
        from wildtrain import params as params_mod

        p = params_mod.load(Path(root) / params_file)
        stage(p, root)
    except WildtrainError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
