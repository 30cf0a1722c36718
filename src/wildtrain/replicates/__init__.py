"""Seed replicates: the same params trained with several seeds as DVC experiments, summarised per metric, and
two param sets compared seed by seed, so a difference can be told from training noise
(docs/how-to/seed-replicates.md, docs/explanation/comparing-runs.md)."""
