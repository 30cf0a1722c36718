"""Datasets: the canonical COCO form every stage and framework reads, and how it is made."""
