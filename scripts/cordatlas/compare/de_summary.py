"""The differential-expression table format (columns, order, reading back) and the per-cell-type summary."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import pandas as pd

from cordatlas.checks import require_columns
from cordatlas.compare.donor_stats import EXPLORATORY, PRESPECIFIED
from cordatlas.errors import UserInputError
from cordatlas.vocabulary import EVIDENCE, LOW_POWER, check_evidence

#: Columns of every differential-expression table (pseudobulk and cell-level alike).
#: ``log2FC`` is the unshrunk maximum-likelihood (DESeq2 Wald) estimate that ``stat`` and
#: ``pvalue`` test; ``log2FC_shrunk`` the same coefficient under apeGLM's heavy-tailed prior
#: (Zhu et al. 2019, Bioinformatics 35:2084; PyDESeq2's lfc_shrink), the better effect size for
#: ranking and for genes with few counts; NaN in cell-level tables. ``low_power``: the smaller
#: group has at most comparison.low_power_max_replicates donors (False in cell-level tables,
#: whose evidence label already says exploratory). ``contamination_flag`` and
#: ``contamination_source`` (a cell type, "ambient" or ""): see
#: :func:`cordatlas.compare.contamination.contamination_flags`. ``family``: the
#: Benjamini-Hochberg family of ``padj`` (``prespecified``: a gene of a library set with an
#: expectation in that cell type; ``exploratory``: the rest, and every cell-level row);
#: ``padj_all``: BH over all the table's genes. ``loo_max_pvalue``, ``loo_weakest_donor``,
#: ``survives_leave_one_out``: the leave-one-donor-out re-test of significant rows
#: (:func:`cordatlas.compare.deseq2.leave_one_out_de`; empty where not re-tested).
DE_COLUMNS = [
    "cell_type",
    "gene",
    "base_mean",
    "log2FC",
    "lfcSE",
    "log2FC_shrunk",
    "stat",
    "pvalue",
    "padj",
    "family",
    "padj_all",
    "method",
    EVIDENCE,
    "n_replicates_condition",
    "n_replicates_reference",
    "n_cells_condition",
    "n_cells_reference",
    "covariates",
    LOW_POWER,
    "contamination_flag",
    "contamination_source",
    "loo_max_pvalue",
    "loo_weakest_donor",
    "survives_leave_one_out",
]

DE_DTYPES = {
    "cell_type": object,
    "gene": object,
    "base_mean": float,
    "log2FC": float,
    "lfcSE": float,
    "log2FC_shrunk": float,
    "stat": float,
    "pvalue": float,
    "padj": float,
    "family": object,
    "padj_all": float,
    "method": object,
    EVIDENCE: object,
    "n_replicates_condition": np.int64,
    "n_replicates_reference": np.int64,
    "n_cells_condition": np.int64,
    "n_cells_reference": np.int64,
    "covariates": object,
    LOW_POWER: bool,
    "contamination_flag": bool,
    "contamination_source": object,
    "loo_max_pvalue": float,
    "loo_weakest_donor": object,
    "survives_leave_one_out": "boolean",
}

#: Columns a table may lack (cell-level tables, tables written before they existed) and the
#: value they then hold (``padj_all``: the table's ``padj``, one family).
DE_DEFAULTS = {
    "log2FC_shrunk": np.nan,
    LOW_POWER: False,
    "contamination_flag": False,
    "contamination_source": "",
    "family": EXPLORATORY,
    "padj_all": np.nan,
    "loo_max_pvalue": np.nan,
    "loo_weakest_donor": "",
    "survives_leave_one_out": pd.NA,
}

_TEXT = (
    "cell_type",
    "gene",
    "method",
    EVIDENCE,
    "covariates",
    "contamination_source",
    "family",
    "loo_weakest_donor",
)
_FLAGS = (LOW_POWER, "contamination_flag")

#: Columns of :func:`de_summary`'s result after the plan's. ``n_significant_flagged``: the
#: significant genes with ``contamination_flag``; ``n_prespecified`` /
#: ``n_significant_prespecified``: genes tested / significant in the pre-specified family (``padj``
#: is adjusted within each family, so ``n_significant`` is the two families' sum).
SUMMARY_COUNTS = [
    "n_genes_tested",
    "n_significant",
    "n_up",
    "n_down",
    "n_significant_flagged",
    "n_prespecified",
    "n_significant_prespecified",
]


def empty_de_table() -> pd.DataFrame:
    """A DE table with no gene: :data:`DE_COLUMNS` with their dtypes."""
    return pd.DataFrame({c: pd.Series(dtype=DE_DTYPES[c]) for c in DE_COLUMNS})


def finish_de_table(results: pd.DataFrame, *, table: str) -> pd.DataFrame:
    """Defaults filled, dtypes fixed, rows by p-value (NaN last, ties by gene name), labels checked."""
    results = _with_defaults(results).astype(DE_DTYPES)
    check_evidence(results[EVIDENCE], table=table)
    return results.sort_values(
        ["pvalue", "gene"], na_position="last", kind="mergesort"
    ).reset_index(drop=True)


def read_de_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a DE table written with :data:`DE_COLUMNS` (names stay text: a gene called "NA").

    A table written before the shrunk fold change, ``low_power`` and the contamination columns
    existed gets them with :data:`DE_DEFAULTS` (no shrinkage, not flagged).
    """
    text = {c: str for c in (*_TEXT, *_FLAGS)}
    table = pd.read_csv(path, sep="\t", dtype=text, keep_default_na=False)
    for flag in _FLAGS:
        if flag in table:
            table[flag] = table[flag].str.strip().str.lower().isin(["true", "1"])
    if "survives_leave_one_out" in table:
        words = table["survives_leave_one_out"].astype(str).str.strip().str.lower()
        table["survives_leave_one_out"] = pd.array(
            [
                True if w in ("true", "1") else False if w in ("false", "0") else pd.NA
                for w in words
            ],
            dtype="boolean",
        )
        text["survives_leave_one_out"] = str
    numeric = [c for c in table.columns if c not in text]
    table[numeric] = table[numeric].apply(pd.to_numeric, errors="coerce")
    return _with_defaults(table)


def _with_defaults(table: pd.DataFrame) -> pd.DataFrame:
    """:data:`DE_DEFAULTS` in the columns a table lacks or left empty (NaN)."""
    table = table.copy()
    for column, default in DE_DEFAULTS.items():
        if column == "padj_all":
            kept = table[column] if column in table else pd.Series(np.nan, index=table.index)
            table[column] = kept.where(kept.notna(), table["padj"]) if "padj" in table else kept
        elif column not in table:
            table[column] = default
        elif not isinstance(default, float) and default is not pd.NA:
            table[column] = table[column].where(table[column].notna(), default)
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
        higher in the condition), ``n_down``, ``n_significant_flagged`` (significant genes
        with ``contamination_flag``: another cell type or ambient RNA can explain them),
        ``n_prespecified`` and ``n_significant_prespecified`` (tested and significant genes of
        the pre-specified family, ``family == "prespecified"``).

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
) -> tuple[int, ...]:
    """The :data:`SUMMARY_COUNTS` of one DE table (0 if none)."""
    if table is None or table.empty:
        return (0,) * len(SUMMARY_COUNTS)
    labels = set(table[EVIDENCE].astype(str))
    if labels != {label}:
        raise UserInputError(
            f"the DE table of cell type {cell_type!r} carries evidence {sorted(labels)} but the "
            f"plan gives it {label!r}; summarise the results of one plan."
        )
    padj = pd.to_numeric(table["padj"], errors="coerce").to_numpy(dtype=float)
    lfc = pd.to_numeric(table["log2FC"], errors="coerce").to_numpy(dtype=float)
    significant = np.nan_to_num(padj, nan=1.0) < alpha
    flagged = (
        table["contamination_flag"].fillna(False).astype(bool).to_numpy()
        if "contamination_flag" in table
        else np.zeros(len(table), dtype=bool)
    )
    tested = table["pvalue"].notna().to_numpy()
    prespecified = (
        (table["family"].astype(str) == PRESPECIFIED).to_numpy()
        if "family" in table
        else np.zeros(len(table), dtype=bool)
    )
    return (
        int(tested.sum()),
        int(significant.sum()),
        int((significant & (lfc > 0)).sum()),
        int((significant & (lfc < 0)).sum()),
        int((significant & flagged).sum()),
        int((tested & prespecified).sum()),
        int((significant & prespecified).sum()),
    )
