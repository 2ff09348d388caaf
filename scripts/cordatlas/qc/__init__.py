"""Per-sample quality control: metrics, adaptive thresholds, doublet calls, per-cell reasons."""
