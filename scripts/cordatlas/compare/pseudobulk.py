"""Pseudobulks: raw counts summed per cell type and donor, the unit of donor-level DE.

Which cell type gets which test is :mod:`cordatlas.compare.plan`; the tests are
:mod:`cordatlas.compare.deseq2` (donor-level) and :mod:`cordatlas.compare.cell_level`
(exploratory).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cordatlas.atlas.genes import measured_in_all
from cordatlas.checks import is_safe_name
from cordatlas.compare.donor_stats import replicate_table
from cordatlas.errors import UserInputError
from cordatlas.io import stage
from cordatlas.params import ComparisonParams

log = logging.getLogger(__name__)

#: Separator of cell type and replicate in pseudobulk ids.
_ID_SEPARATOR = "__"


def cell_type_slug(name: str) -> str:
    """A file- and wildcard-safe name for a cell type: the name itself when already safe.

    Unsafe names get their unsafe characters replaced by ``_`` and a short hash of the full
    name appended, so two names that differ only in unsafe characters never share a slug.
    """
    name = str(name)
    if is_safe_name(name):
        return name
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).lstrip("_.-") or "cell_type"
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
    return f"{cleaned}-{digest}"


def aggregate_pseudobulk(
    adata: ad.AnnData,
    comparison: ComparisonParams,
    *,
    condition_key: str = "condition",
    counts_layer: str | None = "counts",
) -> ad.AnnData:
    """Sum raw counts per cell type and replicate (donor): one pseudobulk sample per pair.

    Parameters
    ----------
    adata
        Cells x genes with raw counts in ``layers[counts_layer]`` and obs columns
        ``comparison.cell_type_key``, ``comparison.replicate_key``, `condition_key` and the
        ``comparison.covariates``.
    comparison
        config ``comparison``. ``cell_type_key``: obs column of cell-type labels (every cell
        must have one; ``unassigned`` is a label). ``replicate_key``: the unit of biological
        replication; several samples of one donor are summed into that donor's pseudobulk.
        ``covariates``: replicate-level obs columns (such as ``sex``) carried as text; each
        must be constant within a replicate.
    condition_key
        obs column of the condition (cord_blood, adult); constant within a replicate.
    counts_layer
        Layer holding raw integer counts; None uses ``X``.

    Returns
    -------
    AnnData
        One row per (cell type, replicate) pair that has cells, named
        ``f"{cell_type}__{replicate}"``, ordered by cell type (category order when the column is
        categorical, otherwise sorted) then replicate. X: summed counts (int64; CSR when the
        counts are sparse). obs: the cell-type and replicate keys, `condition_key`,
        ``n_cells`` and the covariates. var: the genes of `adata` measured in every sample
        (:func:`cordatlas.atlas.genes.measured_in_all`; a gene zero-filled in samples that did
        not measure it would sum to a false difference). ``uns["pseudobulk"]`` records the keys
        used and how many genes were left out as not measured everywhere.

    Raises
    ------
    UserInputError
        A column or the layer is missing, a cell lacks a label, counts are not non-negative
        integers, or a replicate has several conditions or covariate values.
    """
    cell_type_key, replicate_key = comparison.cell_type_key, comparison.replicate_key
    metadata = list(comparison.covariates)
    _check_labels(adata, comparison, condition_key=condition_key)
    measured = np.flatnonzero(measured_in_all(adata))
    matrix, where = _counts_source(adata, counts_layer)
    n_unmeasured = int(adata.n_vars - measured.size)
    if n_unmeasured:
        log.info(
            "pseudobulk: %d of %d genes are not measured in every sample and are left out",
            n_unmeasured,
            adata.n_vars,
        )
    table = replicate_table(
        adata.obs, replicate_key=replicate_key, condition_key=condition_key, columns=metadata
    )
    type_order = _category_order(adata.obs[cell_type_key])
    groups, cell_group = _group_cells(adata.obs, comparison, type_order, list(table.index))
    summed = _sum_by_group(matrix, cell_group, groups.size, measured, where=where)
    pb_obs = _pseudobulk_obs(
        groups, cell_group, table, comparison, type_order, condition_key=condition_key
    )
    pseudobulk = ad.AnnData(
        X=summed,
        obs=pb_obs,
        var=pd.DataFrame(index=adata.var_names[measured].astype(str).copy()),
    )
    pseudobulk.uns["pseudobulk"] = {
        "cell_type_key": cell_type_key,
        "replicate_key": replicate_key,
        "condition_key": condition_key,
        "counts_layer": "X" if counts_layer is None else counts_layer,
        "metadata": [str(m) for m in metadata],
        "n_cells": int(adata.n_obs),
        "genes_not_measured_in_every_sample": n_unmeasured,
    }
    log.info(
        "pseudobulk: %d cells -> %d pseudobulks (%d cell types x %d %ss)",
        adata.n_obs,
        groups.size,
        pb_obs[cell_type_key].nunique(),
        pb_obs[replicate_key].nunique(),
        replicate_key,
    )
    return pseudobulk


def _check_labels(adata: ad.AnnData, comparison: ComparisonParams, *, condition_key: str) -> None:
    """Every key an obs column, and every cell with a value in each."""
    obs = adata.obs
    for key, field in (
        (comparison.cell_type_key, "cell_type_key"),
        (comparison.replicate_key, "replicate_key (config comparison.replicate_key)"),
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


def _category_order(labels: pd.Series) -> list[str]:
    """Category order of a categorical column, otherwise the sorted values."""
    if isinstance(labels.dtype, pd.CategoricalDtype):
        return [str(c) for c in labels.cat.categories]
    return sorted(labels.astype(str).unique())


def _group_cells(
    obs: pd.DataFrame,
    comparison: ComparisonParams,
    type_order: Sequence[str],
    replicate_order: Sequence[str],
) -> tuple[np.ndarray, np.ndarray]:
    """The observed (cell type, replicate) group codes and each cell's group; no empty groups."""
    type_codes = pd.Categorical(
        obs[comparison.cell_type_key].astype(str), categories=type_order
    ).codes
    replicate_codes = pd.Categorical(
        obs[comparison.replicate_key].astype(str), categories=replicate_order
    ).codes
    group_of_cell = type_codes.astype(np.int64) * len(replicate_order) + replicate_codes
    return np.unique(group_of_cell, return_inverse=True)


def _pseudobulk_obs(
    groups: np.ndarray,
    cell_group: np.ndarray,
    table: pd.DataFrame,
    comparison: ComparisonParams,
    type_order: Sequence[str],
    *,
    condition_key: str,
) -> pd.DataFrame:
    """One row per group: its id, cell type, replicate, condition, cells and covariates."""
    cell_type_key, replicate_key = comparison.cell_type_key, comparison.replicate_key
    replicate_order = list(table.index)
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
    pb_obs["n_cells"] = np.bincount(cell_group, minlength=groups.size).astype(np.int64)
    for column in comparison.covariates:
        if column in (cell_type_key, replicate_key, condition_key, "n_cells"):
            continue
        pb_obs[column] = table[column].reindex(group_replicates).to_numpy()
    return pb_obs


def _counts_source(adata: ad.AnnData, counts_layer: str | None):
    """The matrix holding the raw counts (in memory or on disk) and where it is, for messages."""
    if counts_layer is None:
        matrix, where = adata.X, "X"
    else:
        if counts_layer not in adata.layers:
            raise UserInputError(
                f"layer {counts_layer!r} with raw counts is missing (layers: "
                f"{sorted(adata.layers.keys())}); pseudobulks need raw counts, which the atlas "
                "keeps in layers['counts']."
            )
        matrix, where = adata.layers[counts_layer], f"layers[{counts_layer!r}]"
    if matrix is None:
        raise UserInputError(f"{where} is empty; pseudobulks need raw counts.")
    return matrix, where


def _sum_by_group(
    matrix, cell_group: np.ndarray, n_groups: int, genes: np.ndarray, *, where: str
) -> sp.csr_matrix | np.ndarray:
    """Counts of the `genes` columns summed over the cells of each group, as int64.

    `matrix` (cells x genes: dense, sparse, or an h5ad's matrix on disk) is read
    ``io.stage.CHUNK_CELLS`` cells at a time, each chunk checked to hold counts and added into
    the groups x genes sums: the job holds one chunk and the sums, never an int64 copy of all
    counts (which tripled aggregate_pseudobulk's memory over its input). Sparse in, CSR out.
    """
    summed = np.zeros((n_groups, genes.size), dtype=np.int64)
    sparse = sp.issparse(matrix[0:1])
    for start in range(0, len(cell_group), stage.CHUNK_CELLS):
        block = matrix[start : start + stage.CHUNK_CELLS]
        block = sp.csr_matrix(block) if sparse else np.asarray(block)
        _check_counts(block.data if sparse else block.ravel(), where)
        rows = cell_group[start : start + block.shape[0]]
        indicator = sp.csr_matrix(
            (np.ones(rows.size, dtype=np.int64), (rows, np.arange(rows.size))),
            shape=(n_groups, rows.size),
        )
        product = indicator @ block[:, genes].astype(np.int64)
        summed += product.toarray() if sp.issparse(product) else product
    return sp.csr_matrix(summed) if sparse else summed


def _check_counts(values: np.ndarray, where: str) -> None:
    """Refuse values that are not non-negative integers (normalised or log data)."""
    if not values.size:
        return
    finite = np.isfinite(values)
    if not finite.all() or (values < 0).any() or (values != np.round(values)).any():
        bad = values[~finite | (values < 0) | (values != np.round(values))][0]
        raise UserInputError(
            f"{where} holds values that are not raw counts (e.g. {bad!r}: not a "
            "non-negative integer); pseudobulk DE sums raw UMI counts, so pass the raw "
            "count layer (not normalised or log-transformed data)."
        )
