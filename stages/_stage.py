"""Shared by the stage scripts: a `python` without wildtrain (not the project's venv) is one line, not a traceback."""

import sys


def no_wildtrain(e: ModuleNotFoundError) -> None:
    sys.exit(f"error: {sys.executable} cannot import '{e.name}': run the pipeline with the project's Python "
             f"(source .venv/bin/activate, or make repro / make exp)")
