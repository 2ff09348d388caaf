"""Figures: one base (backend, palette, save, empty figure, p-values) and one module per stage."""
