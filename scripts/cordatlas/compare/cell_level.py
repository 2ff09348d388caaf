"""The exploratory fallback for a cell type without donor-level replication: a cell-level Wilcoxon test."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cordatlas.atlas.genes import UNMEASURED_KEY, measured_in_all
from cordatlas.checks import check_contrast, require_columns
from cordatlas.compare.de_summary import DE_COLUMNS, empty_de_table, finish_de_table
from cordatlas.compare.donor_stats import bh_adjust
from cordatlas.compare.plan import METHOD_CELL_LEVEL, METHOD_EVIDENCE
from cordatlas.errors import UserInputError
from cordatlas.params import ComparisonParams, Contrast

#: The uns entries :func:`cell_level_de` reads (a caller reading cells from disk needs these).
UNS_KEYS = ("log1p", UNMEASURED_KEY)


def cell_level_de(
    adata: ad.AnnData,
    comparison: ComparisonParams,
    contrast: Contrast,
    *,
    cell_type: str,
    condition_key: str = "condition",
) -> tuple[pd.DataFrame, list[str]]:
    """Exploratory cell-level Wilcoxon test for a cell type without donor-level replication.

    Cells of one donor are not independent replicates: the p-values treat every cell as one,
    so they are far too small for a claim about cord blood vs adult and are **not donor-level
    evidence** (Squair et al. 2021; Zimmerman et al. 2021). Use them to rank genes worth a
    look, never as findings. Every row says so in ``evidence``.

    Scanpy's ``rank_genes_groups(method="wilcoxon", tie_correct=True)`` compares the cell
    type's condition cells with its reference cells on the log-normalised ``X`` (genes
    detected in none of these cells, and genes some sample did not measure
    (:func:`cordatlas.atlas.genes.measured_in_all`: zero-filled there), are not tested).

    Parameters
    ----------
    adata
        Cells x genes, log-normalised ``X`` (log1p of size-normalised counts), obs columns
        ``comparison.cell_type_key``, `condition_key`, ``comparison.replicate_key``.
    comparison
        config ``comparison``: the keys and ``min_cells_per_replicate``, the cells each group
        needs.
    contrast
        (condition, reference).
    cell_type
        The cell type to test.

    Returns
    -------
    results
        :data:`cordatlas.compare.de_summary.DE_COLUMNS`, sorted by p-value. ``base_mean`` is
        the mean normalised expression (``expm1`` of ``X``, i.e. on the normalisation's scale,
        not counts) over the cell type's cells of both groups; ``log2FC`` is scanpy's (about
        +-30 for a gene undetected in one group); ``lfcSE`` NaN; ``stat`` the Wilcoxon z
        score; ``padj`` Benjamini-Hochberg. method ``cell_level_wilcoxon``, evidence
        ``exploratory_no_replication`` in every row; ``n_replicates_*`` count the donors
        contributing cells.
    notes
        Sentences for the log and the report, the first one the warning above.

    Raises
    ------
    UserInputError
        A key is missing, ``X`` holds raw counts, or a group has too few cells.
    """
    pair = check_contrast(contrast.as_tuple())
    require_columns(
        adata.obs.columns,
        [comparison.cell_type_key, condition_key, comparison.replicate_key],
        table="obs",
        fix="fix the key in the config.",
    )
    mask, is_c = _select_cells(adata, comparison, pair, cell_type, condition_key=condition_key)
    sub, replicates = _expressed_subset(adata, comparison, pair, mask, cell_type, condition_key)
    reps = (int(np.unique(replicates[is_c]).size), int(np.unique(replicates[~is_c]).size))
    notes = _notes(cell_type, pair, is_c, reps, sub.n_vars, adata.n_vars, comparison.replicate_key)
    if sub.n_vars == 0:
        return empty_de_table(), notes
    table = _rank_genes(sub, pair)
    mean = np.asarray(
        sub.X.expm1().mean(axis=0) if sp.issparse(sub.X) else np.expm1(sub.X).mean(axis=0)
    ).ravel()
    results = pd.DataFrame(
        {
            "cell_type": cell_type,
            "gene": sub.var_names.astype(str),
            "base_mean": mean,
            "log2FC": table["logfoldchanges"].to_numpy(dtype=float),
            "lfcSE": np.nan,
            "stat": table["scores"].to_numpy(dtype=float),
            "pvalue": table["pvals"].to_numpy(dtype=float),
            "padj": bh_adjust(table["pvals"].to_numpy(dtype=float)),
            "method": METHOD_CELL_LEVEL,
            "evidence": METHOD_EVIDENCE[METHOD_CELL_LEVEL],
            "n_replicates_condition": reps[0],
            "n_replicates_reference": reps[1],
            "n_cells_condition": int(is_c.sum()),
            "n_cells_reference": int((~is_c).sum()),
            "covariates": "",
        },
        columns=DE_COLUMNS,
    )
    return finish_de_table(results, table=f"cell-level DE of {cell_type}"), notes


def _select_cells(
    adata: ad.AnnData,
    comparison: ComparisonParams,
    contrast: tuple[str, str],
    cell_type: str,
    *,
    condition_key: str,
) -> tuple[np.ndarray, np.ndarray]:
    """The cell type's cells of both groups, and which of them are the condition's."""
    condition, reference = contrast
    types = adata.obs[comparison.cell_type_key].astype(str).to_numpy()
    groups = adata.obs[condition_key].astype(str).to_numpy()
    mask = (types == cell_type) & np.isin(groups, [condition, reference])
    is_c = groups[mask] == condition
    n_c, n_r = int(is_c.sum()), int((~is_c).sum())
    needed = max(comparison.min_cells_per_replicate, 1)
    if min(n_c, n_r) < needed:
        raise UserInputError(
            f"cell type {cell_type!r} has {n_c} {condition} and {n_r} {reference} cells; the "
            f"cell-level test needs >= {needed} per group (plan_comparisons leaves it "
            "untested)."
        )
    return mask, is_c


def _expressed_subset(
    adata: ad.AnnData,
    comparison: ComparisonParams,
    contrast: tuple[str, str],
    mask: np.ndarray,
    cell_type: str,
    condition_key: str,
) -> tuple[ad.AnnData, np.ndarray]:
    """The selected cells and their detected genes, grouped for scanpy; their replicates."""
    condition, reference = contrast
    x = adata.X[np.flatnonzero(mask)]
    x = sp.csr_matrix(x, dtype=np.float64) if sp.issparse(x) else np.asarray(x, dtype=np.float64)
    values = x.data if sp.issparse(x) else x.ravel()
    if values.size and np.all(values == np.round(values)) and values.max() > 0:
        raise UserInputError(
            f"X of cell type {cell_type!r} holds only whole numbers, i.e. raw counts; the "
            "cell-level test needs log-normalised X (run the atlas normalisation first)."
        )
    # a gene some sample did not measure is zero-filled there: a false zero, never tested
    detected = (np.asarray((x != 0).sum(axis=0)).ravel() > 0) & measured_in_all(adata)
    groups = adata.obs[condition_key].astype(str).to_numpy()[mask]
    sub = ad.AnnData(
        X=x[:, np.flatnonzero(detected)],
        obs=pd.DataFrame(
            {"group": pd.Categorical(groups, categories=[reference, condition])},
            index=pd.Index(adata.obs_names[mask].astype(str)),
        ),
        var=pd.DataFrame(index=pd.Index(adata.var_names.astype(str)[detected])),
    )
    if "log1p" in adata.uns:
        sub.uns["log1p"] = dict(adata.uns["log1p"])
    replicates = adata.obs[comparison.replicate_key].astype(str).to_numpy()[mask]
    return sub, replicates


def _notes(
    cell_type: str,
    contrast: tuple[str, str],
    is_c: np.ndarray,
    reps: tuple[int, int],
    n_tested: int,
    n_genes: int,
    replicate_key: str,
) -> list[str]:
    """The exploratory warning, then how many genes were tested."""
    condition, reference = contrast
    n_c, n_r = int(is_c.sum()), int((~is_c).sum())
    reps_c, reps_r = reps
    return [
        f"EXPLORATORY {cell_type}: cell-level Wilcoxon test of {n_c} {condition} cells (from "
        f"{reps_c} {replicate_key}{'s' if reps_c != 1 else ''}) vs {n_r} {reference} cells "
        f"(from {reps_r} {replicate_key}{'s' if reps_r != 1 else ''}). Cells of one "
        f"{replicate_key} are not independent replicates, so these p-values are not "
        "donor-level evidence and overstate significance; use them to rank genes, not as "
        "findings.",
        f"{cell_type}: {n_tested} of {n_genes} genes tested (measured in every sample and "
        "detected in at least one of these cells).",
    ]


def _rank_genes(sub: ad.AnnData, contrast: tuple[str, str]) -> pd.DataFrame:
    """Scanpy's Wilcoxon test of condition vs reference, one row per gene of `sub` in order."""
    import scanpy as sc

    condition, reference = contrast
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        sc.tl.rank_genes_groups(
            sub,
            groupby="group",
            groups=[condition],
            reference=reference,
            method="wilcoxon",
            tie_correct=True,
            use_raw=False,
            n_genes=sub.n_vars,
        )
    table = sc.get.rank_genes_groups_df(sub, group=condition).set_index("names")
    return table.reindex(sub.var_names.astype(str))
