"""Tracking is a side channel: lineage hashes, the MLflow run, per-epoch metrics to dvclive + MLflow."""
