"""Cell-type annotation from the cited marker panel (and optionally CellTypist)."""
