"""The count formats and orientations a sample sheet may name, and the demo's format from a path.

Light by design (standard library only): the Snakefile imports it while parsing.
"""

from __future__ import annotations

import re
from pathlib import Path

from cordatlas.errors import UserInputError

__all__ = ["COUNT_FORMATS", "FORMATS", "ORIENTATIONS", "infer_format"]

#: Formats the readers read and the writers write.
COUNT_FORMATS: tuple[str, ...] = ("10x_h5", "10x_mtx", "h5ad", "loom", "delimited")
#: Values of the sample sheet's `format` column.
FORMATS: tuple[str, ...] = ("auto", *COUNT_FORMATS)
#: Values of the sample sheet's `orientation` column (delimited text only).
ORIENTATIONS: tuple[str, ...] = ("auto", "genes_x_cells", "cells_x_genes")


def infer_format(path: str) -> str:
    """The format a demo path is written in when the sample sheet says `auto` (from its name)."""
    name = path.lower().rstrip("/")
    if name.endswith(".h5ad"):
        return "h5ad"
    if name.endswith(".h5"):
        return "10x_h5"
    if name.endswith(".loom"):
        return "loom"
    if re.search(r"\.(csv|tsv|txt)(\.gz)?$", name):
        return "delimited"
    if "." not in Path(name).name:
        return "10x_mtx"
    raise UserInputError(
        f"cannot infer the format of {path!r}; set the sample sheet's `format` to one of "
        f"{', '.join(COUNT_FORMATS)}."
    )
