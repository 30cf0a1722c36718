"""Framework-independent evaluation: everything reads COCO ground truth and COCO-format predictions."""
