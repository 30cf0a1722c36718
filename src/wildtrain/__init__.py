"""wildtrain: a DVC-driven, reproducible training pipeline for wildlife detection."""

__version__ = "0.1.0"
