"""Donor-level pseudobulk differential expression per cell type, with an exploratory cell-level fallback."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import warnings
from collections.abc import Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cordatlas.compare.donor_stats import bh_adjust, replicate_table, usable_covariates
from cordatlas.errors import UserInputError

log = logging.getLogger(__name__)

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
    "evidence",
    "n_replicates_condition",
    "n_replicates_reference",
    "n_cells_condition",
    "n_cells_reference",
    "covariates",
]

#: Columns of :func:`plan_comparisons`' result.
PLAN_COLUMNS = [
    "cell_type",
    "slug",
    "method",
    "reason",
    "n_replicates_condition",
    "n_replicates_reference",
    "n_cells_condition",
    "n_cells_reference",
]

#: Values of the plan's and the results' ``method`` column.
METHOD_PSEUDOBULK = "pseudobulk_deseq2"
METHOD_CELL_LEVEL = "cell_level_wilcoxon"
METHOD_NOT_TESTED = "not_tested"

#: Values of the results' ``evidence`` column.
EVIDENCE_DONOR = "donor_level"
EVIDENCE_EXPLORATORY = "exploratory_no_replication"

#: Names usable as they are for file names and Snakemake wildcards (as in cordatlas.annotate.panel).
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

#: Separator of cell type and replicate in pseudobulk ids.
_ID_SEPARATOR = "__"


# ============================================================================================
# Aggregation
# ============================================================================================
def aggregate_pseudobulk(
    adata: ad.AnnData,
    *,
    cell_type_key: str = "cell_type",
    replicate_key: str = "donor",
    condition_key: str = "condition",
    counts_layer: str | None = "counts",
    metadata: Sequence[str] = (),
) -> ad.AnnData:
    """Sum raw counts per cell type and replicate (donor): one pseudobulk sample per pair.

    Parameters
    ----------
    adata
        Cells x genes with raw counts in ``layers[counts_layer]`` and obs columns
        `cell_type_key`, `replicate_key`, `condition_key` and `metadata`.
    cell_type_key
        obs column of cell-type labels (every cell must have one; ``unassigned`` is a label).
    replicate_key
        The unit of biological replication (config comparison.replicate_key): several samples
        of one donor are summed into that donor's pseudobulk.
    condition_key
        obs column of the condition (cord_blood, adult); constant within a replicate.
    counts_layer
        Layer holding raw integer counts; None uses ``X``.
    metadata
        Replicate-level obs columns (covariates such as ``sex``) to carry; each must be
        constant within a replicate. Carried as text.

    Returns
    -------
    AnnData
        One row per (cell type, replicate) pair that has cells, named
        ``f"{cell_type}__{replicate}"``, ordered by cell type (category order when the column is
        categorical, otherwise sorted) then replicate. X: summed counts (int64; CSR when the
        counts are sparse). obs: `cell_type_key`, `replicate_key`, `condition_key`, ``n_cells``
        and the `metadata` columns. var: the genes of `adata`. ``uns["pseudobulk"]`` records
        the keys used.

    Raises
    ------
    UserInputError
        A column or the layer is missing, a cell lacks a label, counts are not non-negative
        integers, or a replicate has several conditions or metadata values.
    """
    obs = adata.obs
    for key, field in (
        (cell_type_key, "cell_type_key"),
        (replicate_key, "replicate_key (config comparison.replicate_key)"),
        (condition_key, "condition_key"),
    ):
        if key not in obs.columns:
            raise UserInputError(
                f"{field} {key!r} is not an obs column (available: {sorted(map(str, obs.columns))}); "
                "annotate the cells or fix the key in the config."
            )
        missing = obs[key].isna().to_numpy()
        if missing.any():
            raise UserInputError(
                f"{int(missing.sum())} cells have no value in obs column {key!r} (first: "
                f"{adata.obs_names[np.flatnonzero(missing)[0]]!r}); every cell needs a "
                f"{key} before pseudobulking (label unknown cell types 'unassigned')."
            )
    counts = _counts_matrix(adata, counts_layer)
    table = replicate_table(
        obs, replicate_key=replicate_key, condition_key=condition_key, columns=list(metadata)
    )

    cell_types = obs[cell_type_key]
    if isinstance(cell_types.dtype, pd.CategoricalDtype):
        type_order = [str(c) for c in cell_types.cat.categories]
    else:
        type_order = sorted(cell_types.astype(str).unique())
    type_codes = pd.Categorical(cell_types.astype(str), categories=type_order).codes
    replicate_order = list(table.index)
    replicate_codes = pd.Categorical(
        obs[replicate_key].astype(str), categories=replicate_order
    ).codes
    # one group per observed (cell type, replicate) pair; empty categories make no rows
    group_of_cell = type_codes.astype(np.int64) * len(replicate_order) + replicate_codes
    groups, cell_group = np.unique(group_of_cell, return_inverse=True)
    n_groups = groups.size
    indicator = sp.csr_matrix(
        (np.ones(adata.n_obs, dtype=np.int64), (cell_group, np.arange(adata.n_obs))),
        shape=(n_groups, adata.n_obs),
    )
    summed = indicator @ counts
    if sp.issparse(summed):
        summed = sp.csr_matrix(summed, dtype=np.int64)
    else:
        summed = np.asarray(summed, dtype=np.int64)

    group_types = [type_order[g // len(replicate_order)] for g in groups]
    group_replicates = [replicate_order[g % len(replicate_order)] for g in groups]
    ids = [f"{t}{_ID_SEPARATOR}{r}" for t, r in zip(group_types, group_replicates, strict=True)]
    if len(set(ids)) != len(ids):
        raise UserInputError(
            f"pseudobulk ids collide: a cell type or {replicate_key} name contains "
            f"{_ID_SEPARATOR!r}; rename it so '<cell type>{_ID_SEPARATOR}<{replicate_key}>' is "
            "unique."
        )
    pb_obs = pd.DataFrame(index=pd.Index(ids, name="pseudobulk"))
    pb_obs[cell_type_key] = pd.Categorical(
        group_types, categories=[t for t in type_order if t in set(group_types)]
    )
    pb_obs[replicate_key] = pd.Categorical(
        group_replicates, categories=[r for r in replicate_order if r in set(group_replicates)]
    )
    conditions = table[condition_key].reindex(group_replicates).to_numpy()
    pb_obs[condition_key] = pd.Categorical(conditions, categories=sorted(set(conditions)))
    pb_obs["n_cells"] = np.bincount(cell_group, minlength=n_groups).astype(np.int64)
    for column in metadata:
        if column in (cell_type_key, replicate_key, condition_key, "n_cells"):
            continue
        pb_obs[column] = table[column].reindex(group_replicates).to_numpy()
    pseudobulk = ad.AnnData(
        X=summed, obs=pb_obs, var=pd.DataFrame(index=adata.var_names.astype(str).copy())
    )
    pseudobulk.uns["pseudobulk"] = {
        "cell_type_key": cell_type_key,
        "replicate_key": replicate_key,
        "condition_key": condition_key,
        "counts_layer": "X" if counts_layer is None else counts_layer,
        "metadata": [str(m) for m in metadata],
        "n_cells": int(adata.n_obs),
    }
    log.info(
        "pseudobulk: %d cells -> %d pseudobulks (%d cell types x %d %ss)",
        adata.n_obs,
        n_groups,
        pb_obs[cell_type_key].nunique(),
        pb_obs[replicate_key].nunique(),
        replicate_key,
    )
    return pseudobulk


def _counts_matrix(adata: ad.AnnData, counts_layer: str | None) -> sp.csr_matrix | np.ndarray:
    """The raw counts as int64 (CSR or dense), refusing anything that is not a count."""
    if counts_layer is None:
        matrix = adata.X
        where = "X"
    else:
        if counts_layer not in adata.layers:
            raise UserInputError(
                f"layer {counts_layer!r} with raw counts is missing (layers: "
                f"{sorted(adata.layers.keys())}); pseudobulks need raw counts, which the atlas "
                "keeps in layers['counts']."
            )
        matrix = adata.layers[counts_layer]
        where = f"layers[{counts_layer!r}]"
    if matrix is None:
        raise UserInputError(f"{where} is empty; pseudobulks need raw counts.")
    if sp.issparse(matrix):
        matrix = sp.csr_matrix(matrix)
        values = matrix.data
    else:
        matrix = np.asarray(matrix)
        values = matrix.ravel()
    if values.size:
        finite = np.isfinite(values)
        if not finite.all() or (values < 0).any() or (values != np.round(values)).any():
            bad = values[~finite | (values < 0) | (values != np.round(values))][0]
            raise UserInputError(
                f"{where} holds values that are not raw counts (e.g. {bad!r}: not a "
                "non-negative integer); pseudobulk DE sums raw UMI counts, so pass the raw "
                "count layer (not normalised or log-transformed data)."
            )
    if sp.issparse(matrix):
        return sp.csr_matrix(matrix, dtype=np.int64)
    return matrix.astype(np.int64)


# ============================================================================================
# Planning: which test each cell type gets
# ============================================================================================
def cell_type_slug(name: str) -> str:
    """A file- and wildcard-safe name for a cell type: the name itself when already safe.

    Unsafe names get their unsafe characters replaced by ``_`` and a short hash of the full
    name appended, so two names that differ only in unsafe characters never share a slug.
    """
    name = str(name)
    if SAFE_NAME.match(name):
        return name
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).lstrip("_.-") or "cell_type"
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
    return f"{cleaned}-{digest}"


def _check_contrast(contrast: Sequence[str]) -> tuple[str, str]:
    if isinstance(contrast, str) or len(contrast) != 2 or str(contrast[0]) == str(contrast[1]):
        raise UserInputError(
            f"contrast must be two different conditions (condition, reference), got "
            f"{contrast!r}; fix the config's contrast."
        )
    return str(contrast[0]), str(contrast[1])


def pseudobulk_mask(
    obs: pd.DataFrame,
    *,
    cell_type: str,
    conditions: Sequence[str],
    cell_type_key: str = "cell_type",
    condition_key: str = "condition",
    min_cells: int = 10,
) -> np.ndarray:
    """Which pseudobulks stand for `cell_type` in a comparison: its rows of `conditions` with
    at least `min_cells` cells (the replicates the test uses and the figures show)."""
    return (
        (obs[cell_type_key].astype(str) == cell_type).to_numpy()
        & obs[condition_key].astype(str).isin(list(conditions)).to_numpy()
        & (pd.to_numeric(obs["n_cells"]).to_numpy() >= min_cells)
    )


def plan_comparisons(
    pseudobulk_obs: pd.DataFrame,
    *,
    contrast: Sequence[str],
    cell_type_key: str = "cell_type",
    replicate_key: str = "donor",
    condition_key: str = "condition",
    min_cells: int = 10,
    min_replicates: int = 2,
    exclude: Sequence[str] = ("unassigned",),
) -> pd.DataFrame:
    """Decide per cell type whether it gets a donor-level test, an exploratory one, or none.

    A replicate (donor) counts for a cell type when its pseudobulk holds at least `min_cells`
    cells. Then, in this order:

    - the cell type is in `exclude`: ``not_tested`` ("excluded by config");
    - a group has fewer than `min_cells` cells in total: ``not_tested`` ("absent in
      cord_blood", or how few cells it has), reported, never an error;
    - both groups have at least `min_replicates` usable replicates: ``pseudobulk_deseq2``;
    - otherwise ``cell_level_wilcoxon``: an exploratory cell-level test with no biological
      replication (see :func:`test_cell_level_de`).

    Parameters
    ----------
    pseudobulk_obs
        obs of :func:`aggregate_pseudobulk` (`cell_type_key`, `replicate_key`,
        `condition_key`, ``n_cells``).
    contrast
        (condition, reference), e.g. ("cord_blood", "adult"); other conditions are ignored.
    min_cells
        Cells a pseudobulk needs to count as a replicate, and cells a group needs in total
        to be tested at all.
    min_replicates
        Usable replicates each group needs for the donor-level test (at least 2).
    exclude
        Cell types never tested (e.g. ``unassigned``).

    Returns
    -------
    DataFrame
        :data:`PLAN_COLUMNS`, one row per cell type present in `pseudobulk_obs` (categories
        of a categorical column included), in category or sorted order. ``slug`` is the
        wildcard-safe name (:func:`cell_type_slug`).

    Raises
    ------
    UserInputError
        A column is missing, `min_replicates` < 2, or a condition of the contrast has no
        pseudobulk at all (a typo in the config, not a rare cell type).
    """
    condition, reference = _check_contrast(contrast)
    needed = [cell_type_key, replicate_key, condition_key, "n_cells"]
    missing = [c for c in needed if c not in pseudobulk_obs.columns]
    if missing:
        raise UserInputError(
            f"pseudobulk table lacks column(s) {missing}; build it with aggregate_pseudobulk "
            "using the same cell_type_key, replicate_key and condition_key."
        )
    if min_replicates < 2:
        raise UserInputError(
            f"min_replicates={min_replicates}: a donor-level test needs at least 2 replicates "
            "per group to estimate variation between donors; set comparison.min_replicates_per_group >= 2."
        )
    if min_cells < 1:
        raise UserInputError(
            f"min_cells={min_cells}: set comparison.min_cells_per_replicate to at least 1."
        )
    obs = pseudobulk_obs
    conditions = obs[condition_key].astype(str)
    present = set(conditions)
    for group in (condition, reference):
        if group not in present:
            raise UserInputError(
                f"condition {group!r} of the contrast has no cells (conditions present: "
                f"{sorted(present)}); fix the config's contrast or the sample sheet."
            )
    types = obs[cell_type_key]
    if isinstance(types.dtype, pd.CategoricalDtype):
        order = [str(c) for c in types.cat.categories]
    else:
        order = sorted(types.astype(str).unique())
    excluded = {str(e) for e in exclude}
    type_values = types.astype(str).to_numpy()
    n_cells = pd.to_numeric(obs["n_cells"]).to_numpy()
    rows = []
    for cell_type in order:
        here = type_values == cell_type
        is_c = here & (conditions.to_numpy() == condition)
        is_r = here & (conditions.to_numpy() == reference)
        cells_c, cells_r = int(n_cells[is_c].sum()), int(n_cells[is_r].sum())
        reps_c = int(obs.loc[is_c & (n_cells >= min_cells), replicate_key].nunique())
        reps_r = int(obs.loc[is_r & (n_cells >= min_cells), replicate_key].nunique())
        if cell_type in excluded:
            method, reason = METHOD_NOT_TESTED, "excluded by config"
        elif cells_c < min_cells or cells_r < min_cells:
            method = METHOD_NOT_TESTED
            reason = _absence_reason({condition: cells_c, reference: cells_r}, min_cells=min_cells)
        elif reps_c >= min_replicates and reps_r >= min_replicates:
            method = METHOD_PSEUDOBULK
            reason = (
                f"{reps_c} {condition} and {reps_r} {reference} {replicate_key}s with >= "
                f"{min_cells} cells: donor-level test"
            )
        else:
            method = METHOD_CELL_LEVEL
            short = [
                f"{n} {group} {replicate_key}{'s' if n != 1 else ''}"
                for group, n in ((condition, reps_c), (reference, reps_r))
                if n < min_replicates
            ]
            reason = (
                f"only {' and '.join(short)} with >= {min_cells} cells (< min_replicates "
                f"{min_replicates}): exploratory cell-level test, no biological replication"
            )
        rows.append(
            {
                "cell_type": cell_type,
                "slug": cell_type_slug(cell_type),
                "method": method,
                "reason": reason,
                "n_replicates_condition": reps_c,
                "n_replicates_reference": reps_r,
                "n_cells_condition": cells_c,
                "n_cells_reference": cells_r,
            }
        )
    plan = pd.DataFrame(rows, columns=PLAN_COLUMNS)
    duplicated = plan["slug"][plan["slug"].duplicated()].tolist()
    if duplicated:
        names = plan.loc[plan["slug"].isin(duplicated), "cell_type"].tolist()
        raise UserInputError(
            f"cell types {names} map to the same file name {duplicated[0]!r}; rename one of them."
        )
    for method, n in plan["method"].value_counts().items():
        log.info("plan: %d cell types %s", n, method)
    return plan


def _absence_reason(cells: Mapping[str, int], *, min_cells: int) -> str:
    absent = [group for group, n in cells.items() if n == 0]
    few = [
        f"{n} {'cell' if n == 1 else 'cells'} in {group}"
        for group, n in cells.items()
        if 0 < n < min_cells
    ]
    parts = []
    if absent:
        parts.append(f"absent in {' and '.join(absent)}")
    if few:
        parts.append(f"only {' and '.join(few)} (< min_cells {min_cells})")
    return "; ".join(parts)


# ============================================================================================
# Donor-level test: DESeq2 on pseudobulks
# ============================================================================================
def _empty_results() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=_DE_DTYPES[c]) for c in DE_COLUMNS})


_DE_DTYPES = {
    "cell_type": object,
    "gene": object,
    "base_mean": float,
    "log2FC": float,
    "lfcSE": float,
    "stat": float,
    "pvalue": float,
    "padj": float,
    "method": object,
    "evidence": object,
    "n_replicates_condition": np.int64,
    "n_replicates_reference": np.int64,
    "n_cells_condition": np.int64,
    "n_cells_reference": np.int64,
    "covariates": object,
}


def _sort_results(results: pd.DataFrame) -> pd.DataFrame:
    """By p-value (NaN last), ties by gene name, so the order is deterministic."""
    return results.sort_values(
        ["pvalue", "gene"], na_position="last", kind="mergesort"
    ).reset_index(drop=True)


def test_pseudobulk_de(
    pseudobulk: ad.AnnData,
    *,
    cell_type: str,
    contrast: Sequence[str],
    cell_type_key: str = "cell_type",
    condition_key: str = "condition",
    replicate_key: str = "donor",
    covariates: Sequence[str] = (),
    min_cells: int = 10,
    min_gene_counts: int = 10,
    min_replicates: int = 2,
    n_cpus: int = 1,
) -> tuple[pd.DataFrame, list[str]]:
    """Donor-level differential expression of one cell type: DESeq2 on its pseudobulks.

    The replicates are the cell type's pseudobulks with at least `min_cells` cells, so each
    donor counts once however many cells it has (no pseudoreplication; Squair et al. 2021,
    Nat Commun). Genes are kept when they have at least `min_gene_counts` counts in at least
    as many pseudobulks as the smaller group holds (the spirit of edgeR's filterByExpr: a gene
    expressed in every replicate of one group can be tested). PyDESeq2 (Love et al. 2014
    model) fits ``~covariates + condition``; the Wald test of condition gives log2FC > 0 for
    genes higher in ``contrast[0]``. ``padj`` is Benjamini-Hochberg over the tested genes
    (:func:`cordatlas.compare.donor_stats.bh_adjust`; the expression filter replaces DESeq2's
    independent filtering); genes whose p-value DESeq2 withholds (Cook's outliers) keep NaN.

    Parameters
    ----------
    pseudobulk
        Result of :func:`aggregate_pseudobulk` (all cell types).
    cell_type
        The cell type to test.
    contrast
        (condition, reference).
    covariates
        pseudobulk obs columns to adjust for, as categorical factors. Those that are constant
        among these replicates, aliased with condition or leave no residual degrees of freedom
        are dropped (:func:`cordatlas.compare.donor_stats.usable_covariates`) and named in the notes.
    min_cells
        Cells a pseudobulk needs to be used.
    min_gene_counts
        Counts a gene needs in a pseudobulk to count as expressed there.
    min_replicates
        Usable pseudobulks each group needs (see :func:`plan_comparisons`).
    n_cpus
        Processes PyDESeq2 may use.

    Returns
    -------
    results
        :data:`DE_COLUMNS`, one row per tested gene, sorted by p-value; method
        ``pseudobulk_deseq2``, evidence ``donor_level``. Empty when no gene passes the filter.
    notes
        Sentences for the log and the report: genes filtered, covariates dropped, the design.

    Raises
    ------
    UserInputError
        The cell type, a key or a covariate is missing, or a group has fewer than
        `min_replicates` usable pseudobulks (the plan sends such cell types elsewhere).
    """
    condition, reference = _check_contrast(contrast)
    obs = pseudobulk.obs
    for key in (cell_type_key, condition_key, replicate_key, "n_cells"):
        if key not in obs.columns:
            raise UserInputError(
                f"pseudobulk obs lacks column {key!r}; build it with aggregate_pseudobulk "
                "using the same keys."
            )
    covariates = list(dict.fromkeys(str(c) for c in covariates))
    if condition_key in covariates:
        raise UserInputError(
            f"covariate {condition_key!r} is the condition itself; remove it from "
            "config comparison.covariates."
        )
    absent = [c for c in covariates if c not in obs.columns]
    if absent:
        raise UserInputError(
            f"covariate(s) {absent} are not pseudobulk metadata (available: "
            f"{sorted(map(str, obs.columns))}); pass them to aggregate_pseudobulk(metadata=...) "
            "or remove them from config comparison.covariates."
        )
    types = obs[cell_type_key].astype(str)
    if cell_type not in set(types):
        raise UserInputError(
            f"cell type {cell_type!r} has no pseudobulk (cell types: {sorted(set(types))}); "
            "use a name from the plan."
        )
    use = pseudobulk_mask(
        obs,
        cell_type=cell_type,
        conditions=(condition, reference),
        cell_type_key=cell_type_key,
        condition_key=condition_key,
        min_cells=min_cells,
    )
    sub_obs = obs.loc[use]
    is_c = sub_obs[condition_key].astype(str).to_numpy() == condition
    n_c, n_r = int(is_c.sum()), int((~is_c).sum())
    if min(n_c, n_r) < max(min_replicates, 2):
        raise UserInputError(
            f"cell type {cell_type!r} has {n_c} {condition} and {n_r} {reference} pseudobulks "
            f"with >= {min_cells} cells; a donor-level test needs >= {max(min_replicates, 2)} "
            "per group. plan_comparisons sends it to the exploratory cell-level test or "
            "leaves it untested."
        )
    n_cells = pd.to_numeric(sub_obs["n_cells"]).to_numpy()
    counts = pseudobulk.X[np.flatnonzero(use)]
    counts = counts.toarray() if sp.issparse(counts) else np.asarray(counts)
    counts = counts.astype(np.int64)
    genes = pseudobulk.var_names.astype(str)

    notes: list[str] = []
    min_samples = min(n_c, n_r)
    expressed = (counts >= min_gene_counts).sum(axis=0) >= min_samples
    n_kept = int(expressed.sum())
    notes.append(
        f"{cell_type}: {n_kept} of {len(genes)} genes tested (>= {min_gene_counts} counts in "
        f">= {min_samples} of {n_c + n_r} pseudobulks); {len(genes) - n_kept} filtered out as "
        "too lowly expressed."
    )

    design = pd.DataFrame(
        {condition_key: sub_obs[condition_key].astype(str).to_numpy()},
        index=sub_obs.index.astype(str),
    )
    for covariate in covariates:
        design[covariate] = sub_obs[covariate].astype(str).to_numpy()
    used, dropped = usable_covariates(design, covariates, condition_key=condition_key)
    for covariate, why in dropped.items():
        notes.append(f"{cell_type}: covariate {covariate!r} not used: {why}.")
    formula_shown = "~" + " + ".join([*used, condition_key])
    notes.append(
        f"{cell_type}: PyDESeq2 design {formula_shown}, Wald test {condition} vs {reference} "
        f"({n_c} vs {n_r} {replicate_key}s, {int(n_cells[is_c].sum())} vs "
        f"{int(n_cells[~is_c].sum())} cells); padj: Benjamini-Hochberg over tested genes."
    )
    if n_kept == 0:
        return _empty_results(), notes

    table = _run_deseq2(
        counts[:, expressed],
        design,
        genes=genes[expressed],
        condition_key=condition_key,
        covariates=used,
        contrast=(condition, reference),
        n_cpus=n_cpus,
        notes=notes,
        cell_type=cell_type,
    )
    results = pd.DataFrame(
        {
            "cell_type": cell_type,
            "gene": table.index.astype(str),
            "base_mean": table["baseMean"].to_numpy(dtype=float),
            "log2FC": table["log2FoldChange"].to_numpy(dtype=float),
            "lfcSE": table["lfcSE"].to_numpy(dtype=float),
            "stat": table["stat"].to_numpy(dtype=float),
            "pvalue": table["pvalue"].to_numpy(dtype=float),
            "padj": bh_adjust(table["pvalue"].to_numpy(dtype=float)),
            "method": METHOD_PSEUDOBULK,
            "evidence": EVIDENCE_DONOR,
            "n_replicates_condition": n_c,
            "n_replicates_reference": n_r,
            "n_cells_condition": int(n_cells[is_c].sum()),
            "n_cells_reference": int(n_cells[~is_c].sum()),
            "covariates": ",".join(used),
        },
        columns=DE_COLUMNS,
    )
    withheld = int(results["pvalue"].isna().sum())
    if withheld:
        notes.append(
            f"{cell_type}: {withheld} genes have no p-value (DESeq2 flagged a count outlier "
            "by Cook's distance or the gene could not be fitted)."
        )
    return _sort_results(results.astype(_DE_DTYPES)), notes


def _run_deseq2(
    counts: np.ndarray,
    design: pd.DataFrame,
    *,
    genes: pd.Index,
    condition_key: str,
    covariates: Sequence[str],
    contrast: tuple[str, str],
    n_cpus: int,
    notes: list[str],
    cell_type: str,
) -> pd.DataFrame:
    """PyDESeq2 fit and Wald test; its warnings become notes. Returns its results table."""
    from pydeseq2.dds import DeseqDataSet
    from pydeseq2.default_inference import DefaultInference
    from pydeseq2.ds import DeseqStats
    from threadpoolctl import threadpool_limits  # installed with scikit-learn, which PyDESeq2 needs

    # formula-safe column names: user column names may hold spaces or operators
    metadata = pd.DataFrame(index=design.index)
    metadata["condition"] = pd.Categorical(
        design[condition_key], categories=[contrast[1], contrast[0]]
    )
    terms = []
    for i, covariate in enumerate(covariates):
        name = f"covariate{i}"
        metadata[name] = pd.Categorical(design[covariate].astype(str))
        terms.append(name)
    formula = "~" + " + ".join([*terms, "condition"])
    frame = pd.DataFrame(counts, index=design.index, columns=pd.Index(genes.astype(str)))
    inference = DefaultInference(n_cpus=n_cpus)
    # One BLAS thread: PyDESeq2 fits thousands of tiny per-gene problems, and multithreaded
    # BLAS inside scipy's L-BFGS-B made them about 6x slower on a 2-core machine (19 s vs 3 s
    # for 8 pseudobulks x 1,200 genes). Parallelism comes from n_cpus processes instead.
    with (
        threadpool_limits(limits=1, user_api="blas"),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        dds = DeseqDataSet(
            counts=frame,
            metadata=metadata,
            design=formula,
            refit_cooks=True,
            inference=inference,
            quiet=True,
        )
        dds.deseq2()
        stats = DeseqStats(
            dds,
            contrast=["condition", contrast[0], contrast[1]],
            inference=inference,
            quiet=True,
        )
        stats.summary()
    for message in dict.fromkeys(str(w.message) for w in caught if _worth_noting(w)):
        notes.append(f"{cell_type}: PyDESeq2: {message}")
    return stats.results_df.reindex(frame.columns)


def _worth_noting(caught: warnings.WarningMessage) -> bool:
    """Library deprecation chatter is not a fact about the data."""
    return not issubclass(caught.category, DeprecationWarning | FutureWarning)


# ============================================================================================
# Exploratory fallback: cell-level Wilcoxon
# ============================================================================================
def test_cell_level_de(
    adata: ad.AnnData,
    *,
    cell_type: str,
    contrast: Sequence[str],
    cell_type_key: str = "cell_type",
    condition_key: str = "condition",
    replicate_key: str = "donor",
    min_cells: int = 10,
) -> tuple[pd.DataFrame, list[str]]:
    """Exploratory cell-level Wilcoxon test for a cell type without donor-level replication.

    Cells of one donor are not independent replicates: the p-values treat every cell as one,
    so they are far too small for a claim about cord blood vs adult and are **not donor-level
    evidence** (Squair et al. 2021; Zimmerman et al. 2021). Use them to rank genes worth a
    look, never as findings. Every row says so in ``evidence``.

    Scanpy's ``rank_genes_groups(method="wilcoxon", tie_correct=True)`` compares the cell
    type's `contrast[0]` cells with its `contrast[1]` cells on the log-normalised ``X``
    (genes detected in none of these cells are not tested).

    Parameters
    ----------
    adata
        Cells x genes, log-normalised ``X`` (log1p of size-normalised counts), obs columns
        `cell_type_key`, `condition_key`, `replicate_key`.
    cell_type, contrast
        The cell type and (condition, reference).
    min_cells
        Cells each group needs.

    Returns
    -------
    results
        :data:`DE_COLUMNS`, sorted by p-value. ``base_mean`` is the mean normalised expression
        (``expm1`` of ``X``, i.e. on the normalisation's scale, not counts) over the cell
        type's cells of both groups; ``log2FC`` is scanpy's (about +-30 for a gene
        undetected in one group); ``lfcSE`` NaN; ``stat`` the
        Wilcoxon z score; ``padj`` Benjamini-Hochberg. method ``cell_level_wilcoxon``,
        evidence ``exploratory_no_replication`` in every row; ``n_replicates_*`` count the
        donors contributing cells.
    notes
        Sentences for the log and the report, the first one the warning above.

    Raises
    ------
    UserInputError
        A key is missing, ``X`` holds raw counts, or a group has fewer than `min_cells` cells.
    """
    import scanpy as sc

    condition, reference = _check_contrast(contrast)
    for key in (cell_type_key, condition_key, replicate_key):
        if key not in adata.obs.columns:
            raise UserInputError(
                f"obs column {key!r} is missing (available: {sorted(map(str, adata.obs.columns))}); "
                "fix the key in the config."
            )
    types = adata.obs[cell_type_key].astype(str).to_numpy()
    groups = adata.obs[condition_key].astype(str).to_numpy()
    mask = (types == cell_type) & np.isin(groups, [condition, reference])
    is_c = groups[mask] == condition
    n_c, n_r = int(is_c.sum()), int((~is_c).sum())
    if min(n_c, n_r) < max(min_cells, 1):
        raise UserInputError(
            f"cell type {cell_type!r} has {n_c} {condition} and {n_r} {reference} cells; the "
            f"cell-level test needs >= {max(min_cells, 1)} per group (plan_comparisons leaves "
            "it untested)."
        )
    x = adata.X[np.flatnonzero(mask)]
    x = sp.csr_matrix(x, dtype=np.float64) if sp.issparse(x) else np.asarray(x, dtype=np.float64)
    values = x.data if sp.issparse(x) else x.ravel()
    if values.size and np.all(values == np.round(values)) and values.max() > 0:
        raise UserInputError(
            f"X of cell type {cell_type!r} holds only whole numbers, i.e. raw counts; the "
            "cell-level test needs log-normalised X (run the atlas normalisation first)."
        )
    detected = np.asarray((x != 0).sum(axis=0)).ravel() > 0
    genes = adata.var_names.astype(str)[detected]
    replicates = adata.obs[replicate_key].astype(str).to_numpy()[mask]
    sub = ad.AnnData(
        X=x[:, np.flatnonzero(detected)],
        obs=pd.DataFrame(
            {"group": pd.Categorical(groups[mask], categories=[reference, condition])},
            index=pd.Index(adata.obs_names[mask].astype(str)),
        ),
        var=pd.DataFrame(index=pd.Index(genes)),
    )
    if "log1p" in adata.uns:
        sub.uns["log1p"] = dict(adata.uns["log1p"])
    reps_c = int(np.unique(replicates[is_c]).size)
    reps_r = int(np.unique(replicates[~is_c]).size)
    notes = [
        f"EXPLORATORY {cell_type}: cell-level Wilcoxon test of {n_c} {condition} cells (from "
        f"{reps_c} {replicate_key}{'s' if reps_c != 1 else ''}) vs {n_r} {reference} cells "
        f"(from {reps_r} {replicate_key}{'s' if reps_r != 1 else ''}). Cells of one "
        f"{replicate_key} are not independent replicates, so these p-values are not "
        "donor-level evidence and overstate significance; use them to rank genes, not as "
        "findings.",
        f"{cell_type}: {int(detected.sum())} of {adata.n_vars} genes tested (detected in at "
        "least one of these cells).",
    ]
    if sub.n_vars == 0:
        return _empty_results(), notes
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
    table = table.reindex(genes)
    mean = np.asarray(
        sub.X.expm1().mean(axis=0) if sp.issparse(sub.X) else np.expm1(sub.X).mean(axis=0)
    ).ravel()
    results = pd.DataFrame(
        {
            "cell_type": cell_type,
            "gene": genes,
            "base_mean": mean,
            "log2FC": table["logfoldchanges"].to_numpy(dtype=float),
            "lfcSE": np.nan,
            "stat": table["scores"].to_numpy(dtype=float),
            "pvalue": table["pvals"].to_numpy(dtype=float),
            "padj": bh_adjust(table["pvals"].to_numpy(dtype=float)),
            "method": METHOD_CELL_LEVEL,
            "evidence": EVIDENCE_EXPLORATORY,
            "n_replicates_condition": reps_c,
            "n_replicates_reference": reps_r,
            "n_cells_condition": n_c,
            "n_cells_reference": n_r,
            "covariates": "",
        },
        columns=DE_COLUMNS,
    )
    return _sort_results(results.astype(_DE_DTYPES)), notes


# ============================================================================================
# Summary
# ============================================================================================
def read_plan(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a plan written from :func:`plan_comparisons` (names and slugs stay text)."""
    return pd.read_csv(path, sep="\t", dtype={"cell_type": str, "slug": str}, keep_default_na=False)


def cell_type_of_slug(plan: pd.DataFrame, slug: str) -> str:
    """The cell-type name behind a file-name slug (a Snakemake wildcard) in the plan."""
    return str(plan.set_index("slug").loc[slug, "cell_type"])


def read_de_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a DE table written with :data:`DE_COLUMNS` (names stay text: a gene called "NA")."""
    text = {c: str for c in ("cell_type", "gene", "method", "evidence", "covariates")}
    table = pd.read_csv(path, sep="\t", dtype=text, keep_default_na=False)
    numeric = [c for c in table.columns if c not in text]
    table[numeric] = table[numeric].apply(pd.to_numeric, errors="coerce")
    return table


def de_summary(
    plan: pd.DataFrame, results: Mapping[str, pd.DataFrame], *, alpha: float = 0.05
) -> pd.DataFrame:
    """Per cell type: the plan plus how many genes were tested and found at ``padj < alpha``.

    Parameters
    ----------
    plan
        Result of :func:`plan_comparisons`.
    results
        Cell type name -> its DE table (:data:`DE_COLUMNS`); cell types without an entry
        count zero genes.
    alpha
        Significance level on ``padj``.

    Returns
    -------
    DataFrame
        The plan's columns, then ``evidence`` (of the results, empty when not tested),
        ``n_genes_tested`` (genes with a p-value), ``n_significant``, ``n_up`` (log2FC > 0,
        higher in the condition) and ``n_down``.

    Raises
    ------
    UserInputError
        `results` names a cell type the plan does not have.
    """
    unknown = sorted(set(map(str, results)) - set(plan["cell_type"].astype(str)))
    if unknown:
        raise UserInputError(
            f"results for cell type(s) {unknown} that the plan does not list; summarise the "
            "results of one plan."
        )
    summary = plan.copy().reset_index(drop=True)
    columns = {"evidence": [], "n_genes_tested": [], "n_significant": [], "n_up": [], "n_down": []}
    for cell_type in summary["cell_type"].astype(str):
        table = results.get(cell_type)
        if table is None or table.empty:
            columns["evidence"].append("")
            for key in ("n_genes_tested", "n_significant", "n_up", "n_down"):
                columns[key].append(0)
            continue
        padj = pd.to_numeric(table["padj"], errors="coerce").to_numpy(dtype=float)
        lfc = pd.to_numeric(table["log2FC"], errors="coerce").to_numpy(dtype=float)
        significant = np.nan_to_num(padj, nan=1.0) < alpha
        columns["evidence"].append(";".join(sorted(set(table["evidence"].astype(str)))))
        columns["n_genes_tested"].append(int(table["pvalue"].notna().sum()))
        columns["n_significant"].append(int(significant.sum()))
        columns["n_up"].append(int((significant & (lfc > 0)).sum()))
        columns["n_down"].append(int((significant & (lfc < 0)).sum()))
    for key, values in columns.items():
        summary[key] = pd.Series(values, dtype=object if key == "evidence" else np.int64)
    return summary


# The names follow the rules (`test_pseudobulk_de`); they are not pytest tests.
test_pseudobulk_de.__test__ = False  # type: ignore[attr-defined]
test_cell_level_de.__test__ = False  # type: ignore[attr-defined]
