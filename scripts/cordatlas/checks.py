"""Checks shared by every stage: the contrast, required columns, safe names, rule outputs (one message each).

The output checks (:func:`check_cells_genes`, :func:`check_counts`, :func:`check_table`) run in
each rule's adapter on what it is about to write, so a file no later stage can use (a 0-cell
h5ad, a table without its header) fails the job instead of completing it; Snakemake removes
the outputs of a failed job, so a rerun never trusts them (issue 13).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from cordatlas.errors import OutputCheckError, UserInputError
from cordatlas.vocabulary import SAFE_NAME, SAFE_NAME_PATTERN


def check_contrast(contrast: Sequence[object]) -> tuple[str, str]:
    """The contrast as ``(condition, reference)`` strings; refuse anything but two different ones."""
    if isinstance(contrast, str) or len(contrast) != 2 or str(contrast[0]) == str(contrast[1]):
        raise UserInputError(
            f"contrast must be two different conditions (condition, reference), got "
            f"{contrast!r}; fix contrast in the config."
        )
    return str(contrast[0]), str(contrast[1])


def require_columns(
    columns: Iterable[object], needed: Iterable[str], *, table: str, fix: str
) -> None:
    """Refuse a table (obs, a results TSV) that lacks any of the `needed` columns.

    `table` names it in the message and `fix` says how to make a table that has them.
    """
    missing = _missing(columns, needed)
    if missing:
        raise UserInputError(f"{table} lacks column(s) {missing}; {fix}")


def _missing(columns: Iterable[object], needed: Iterable[str]) -> list[str]:
    """The `needed` names not among `columns`, in the order needed."""
    present = {str(c) for c in columns}
    return [c for c in needed if c not in present]


def is_safe_name(name: object) -> bool:
    """Whether `name` can be a file name and wildcard value (see vocabulary.SAFE_NAME)."""
    return isinstance(name, str) and SAFE_NAME.match(name) is not None


def check_safe_name(name: object, *, what: str) -> str:
    """Return `name`, or refuse it with a message naming `what` it is and the allowed pattern."""
    if not is_safe_name(name):
        raise UserInputError(
            f"{what} {name!r} is not a valid name: use letters, digits, '_', '.' or '-', "
            f"starting with a letter or digit (pattern {SAFE_NAME_PATTERN})"
        )
    return str(name)


# ---- rule outputs -------------------------------------------------------------------------
#: What a failed output check means for the user, closing every message.
_UNUSABLE = "no later stage can use it, so this job fails and Snakemake removes its outputs"


def _refuse(path: object, found: str, fix: str) -> OutputCheckError:
    """The one message shape of an output check: file, what was found, meaning, fix."""
    return OutputCheckError(f"{path} {found}: {_UNUSABLE}; {fix}")


def check_counts(matrix: Any, path: object, *, where: str = "X", fix: str) -> None:
    """Refuse an output whose `matrix` (X or a layer) is not raw integer counts >= 0.

    Uses the ingest's own test (:func:`cordatlas.io.readers.describe_non_counts`: finite,
    >= 0, integers within its tolerance), so "raw counts" means one thing in every rule.
    """
    from cordatlas.io.readers import describe_non_counts  # heavy: only inside a job

    problem = describe_non_counts(matrix)
    if problem is not None:
        raise _refuse(path, f"{where} {problem}, where raw integer counts are expected", fix)


def check_cells_genes(
    adata: Any,
    path: object,
    *,
    min_cells: int = 1,
    min_genes: int = 1,
    require_obs: Iterable[str] = (),
    require_obsm: Iterable[str] = (),
    require_layers: Iterable[str] = (),
    counts: str | None = None,
    obs_unit: str = "cells",
    what: str = "",
    fix: str,
) -> None:
    """Refuse an AnnData output at `path` that later stages cannot use.

    Parameters
    ----------
    adata
        What the rule is about to write (or has just written and read back).
    path
        The output file, named first in every message.
    min_cells, min_genes
        Fewest cells (obs) and genes (var) a later stage can use; 0 allows an empty axis.
    require_obs, require_obsm, require_layers
        Keys later stages read.
    counts
        None, or where raw integer counts must be: "X" or a layer name (:func:`check_counts`;
        the layer is then required too).
    obs_unit
        What an obs row is, for the message ("cells", "pseudobulks").
    what
        Where the object comes from, said after the number found (e.g. " after QC").
    fix
        What the user can do, closing the message.

    Raises
    ------
    OutputCheckError
        One message naming the file, what was found and what to do.
    """
    if adata.n_obs < min_cells:
        found = f"holds {adata.n_obs} {obs_unit}{what} (at least {min_cells} needed)"
        raise _refuse(path, found, fix)
    if adata.n_vars < min_genes:
        raise _refuse(path, f"holds {adata.n_vars} genes{what} (at least {min_genes} needed)", fix)
    layers = (*require_layers, *([] if counts in (None, "X") else [counts]))
    for kind, present, needed in (
        ("obs column(s)", adata.obs.columns, require_obs),
        ("obsm key(s)", adata.obsm.keys(), require_obsm),
        ("layer(s)", adata.layers.keys(), layers),
    ):
        missing = _missing(present, needed)
        if missing:
            raise _refuse(path, f"lacks {kind} {missing}{what}", fix)
    if counts is not None:
        matrix = adata.X if counts == "X" else adata.layers[counts]
        where = "X" if counts == "X" else f"layers[{counts!r}]"
        check_counts(matrix, path, where=where, fix=fix)


def check_table(
    table: Any,
    path: object,
    *,
    required_columns: Iterable[str] = (),
    min_rows: int = 0,
    what: str = "",
    fix: str,
) -> None:
    """Refuse a table output at `path` without the header or the rows later stages read.

    `min_rows` is 0 where a stage may legitimately have nothing to report (no testable cell
    type, no finding): the header is then still checked, so a reader finds its columns.
    `what` and `fix` as in :func:`check_cells_genes`.

    Raises
    ------
    OutputCheckError
        One message naming the file, what was found and what to do.
    """
    missing = _missing(table.columns, required_columns)
    if missing:
        raise _refuse(path, f"lacks column(s) {missing}{what}", fix)
    if len(table) < min_rows:
        raise _refuse(path, f"holds {len(table)} rows{what} (at least {min_rows} needed)", fix)
