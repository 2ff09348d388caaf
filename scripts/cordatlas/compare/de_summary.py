"""The differential-expression table format (columns, order, reading back) and the per-cell-type summary."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import pandas as pd

from cordatlas.checks import require_columns
from cordatlas.errors import UserInputError
from cordatlas.vocabulary import EVIDENCE, check_evidence

#: Columns of every differential-expression table (pseudobulk and cell-level alike).
DE_COLUMNS = [
    "cell_type",
    "gene",
    "base_mean",
    "log2FC",
    "lfcSE",
    "stat",
    "pvalue",
    "padj",
    "method",
    EVIDENCE,
    "n_replicates_condition",
    "n_replicates_reference",
    "n_cells_condition",
    "n_cells_reference",
    "covariates",
]

DE_DTYPES = {
    "cell_type": object,
    "gene": object,
    "base_mean": float,
    "log2FC": float,
    "lfcSE": float,
    "stat": float,
    "pvalue": float,
    "padj": float,
    "method": object,
    EVIDENCE: object,
    "n_replicates_condition": np.int64,
    "n_replicates_reference": np.int64,
    "n_cells_condition": np.int64,
    "n_cells_reference": np.int64,
    "covariates": object,
}

#: Columns of :func:`de_summary`'s result after the plan's.
SUMMARY_COUNTS = ["n_genes_tested", "n_significant", "n_up", "n_down"]


def empty_de_table() -> pd.DataFrame:
    """A DE table with no gene: :data:`DE_COLUMNS` with their dtypes."""
    return pd.DataFrame({c: pd.Series(dtype=DE_DTYPES[c]) for c in DE_COLUMNS})


def finish_de_table(results: pd.DataFrame, *, table: str) -> pd.DataFrame:
    """Dtypes fixed, rows by p-value (NaN last, ties by gene name), evidence labels checked."""
    results = results.astype(DE_DTYPES)
    check_evidence(results[EVIDENCE], table=table)
    return results.sort_values(
        ["pvalue", "gene"], na_position="last", kind="mergesort"
    ).reset_index(drop=True)


def read_de_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a DE table written with :data:`DE_COLUMNS` (names stay text: a gene called "NA")."""
    text = {c: str for c in ("cell_type", "gene", "method", EVIDENCE, "covariates")}
    table = pd.read_csv(path, sep="\t", dtype=text, keep_default_na=False)
    numeric = [c for c in table.columns if c not in text]
    table[numeric] = table[numeric].apply(pd.to_numeric, errors="coerce")
    return table


def de_summary(
    plan: pd.DataFrame, results: Mapping[str, pd.DataFrame], *, alpha: float
) -> pd.DataFrame:
    """Per cell type: the plan plus how many genes were tested and found at ``padj < alpha``.

    Parameters
    ----------
    plan
        Result of :func:`cordatlas.compare.plan.plan_comparisons`.
    results
        Cell type name -> its DE table (:data:`DE_COLUMNS`); cell types without an entry
        count zero genes.
    alpha
        Significance level on ``padj`` (config comparison.alpha).

    Returns
    -------
    DataFrame
        The plan's columns (``evidence``: the plan's label of the cell type's test), then
        ``n_genes_tested`` (genes with a p-value), ``n_significant``, ``n_up`` (log2FC > 0,
        higher in the condition) and ``n_down``.

    Raises
    ------
    UserInputError
        `results` names a cell type the plan does not have, or a DE table carries another
        evidence label than the plan gave its cell type.
    """
    require_columns(
        plan.columns,
        ["cell_type", EVIDENCE],
        table="DE plan",
        fix="build it with plan_comparisons (a plan written before the evidence column "
        "needs rebuilding).",
    )
    unknown = sorted(set(map(str, results)) - set(plan["cell_type"].astype(str)))
    if unknown:
        raise UserInputError(
            f"results for cell type(s) {unknown} that the plan does not list; summarise the "
            "results of one plan."
        )
    summary = plan.copy().reset_index(drop=True)
    counts = [
        _count_genes(cell_type, label, results.get(cell_type), alpha=alpha)
        for cell_type, label in zip(
            summary["cell_type"].astype(str), summary[EVIDENCE].astype(str), strict=True
        )
    ]
    for i, key in enumerate(SUMMARY_COUNTS):
        summary[key] = pd.Series([c[i] for c in counts], dtype=np.int64)
    check_evidence(summary[EVIDENCE], table="DE summary")
    return summary


def _count_genes(
    cell_type: str, label: str, table: pd.DataFrame | None, *, alpha: float
) -> tuple[int, int, int, int]:
    """Genes tested, significant, up and down in one cell type's DE table (zeros if none)."""
    if table is None or table.empty:
        return 0, 0, 0, 0
    labels = set(table[EVIDENCE].astype(str))
    if labels != {label}:
        raise UserInputError(
            f"the DE table of cell type {cell_type!r} carries evidence {sorted(labels)} but the "
            f"plan gives it {label!r}; summarise the results of one plan."
        )
    padj = pd.to_numeric(table["padj"], errors="coerce").to_numpy(dtype=float)
    lfc = pd.to_numeric(table["log2FC"], errors="coerce").to_numpy(dtype=float)
    significant = np.nan_to_num(padj, nan=1.0) < alpha
    return (
        int(table["pvalue"].notna().sum()),
        int(significant.sum()),
        int((significant & (lfc > 0)).sum()),
        int((significant & (lfc < 0)).sum()),
    )
