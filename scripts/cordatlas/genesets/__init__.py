"""Curated gene-set resources (marker panel, signature library, GMT files) and per-cell scoring."""
