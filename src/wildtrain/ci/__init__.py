"""`make ci-rerun BASE=<ref>`: rerun what a change touches (after `dvc pull`) and report it against BASE with noise
bands (docs/how-to/ci-reruns.md)."""
