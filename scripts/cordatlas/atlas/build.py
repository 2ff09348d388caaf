"""From per-sample QC'd counts to an atlas: merge, normalise, highly variable genes, PCA, integration, clustering, UMAP."""

from __future__ import annotations

import itertools
import logging
import os
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.linalg
import scipy.sparse as sp

from cordatlas.atlas.genes import (
    UNMEASURED_KEY,
    check_shared_genes,
    harmonise_gene_ids,
    measured_in_all,
    record_measured_genes,
    sample_id,
    unmeasured_by_sample,
)
from cordatlas.atlas.knn import ExactKNN, fuzzy_connectivities
from cordatlas.checks import require_columns
from cordatlas.config import METADATA_COLUMNS
from cordatlas.errors import UserInputError
from cordatlas.io.stage import CHUNK_CELLS, write_stage_by_rows

log = logging.getLogger(__name__)

#: The measured-gene contract is read through these two (defined in cordatlas.atlas.genes).
__all__ = [
    "attach_part",
    "cluster",
    "cluster_sizes",
    "integrate",
    "leiden_key",
    "measured_in_all",
    "merge_samples",
    "normalise",
    "normalise_to_file",
    "run_pca",
    "select_highly_variable_genes",
    "stage_part",
    "unmeasured_by_sample",
]

#: obs columns that are categorical in the atlas (cellxgene shows categorical obs as colours).
CATEGORICAL_OBS = ("sample", *METADATA_COLUMNS)


def leiden_key(resolution: float) -> str:
    """obs column of the Leiden clustering at `resolution` (e.g. `leiden_res0.5`, `leiden_res1.0`)."""
    return f"leiden_res{float(resolution)}"


def merge_samples(
    samples: Sequence[ad.AnnData],
    *,
    gene_join: str,
    min_cells_per_gene: int,
    min_shared_genes: int,
) -> tuple[ad.AnnData, dict[str, Any]]:
    """Concatenate per-sample AnnData (raw counts in X) into one, keeping raw counts in a layer.

    Samples QC dropped (``uns["qc"]["dropped_sample"]``) are left out and listed in the report.
    Samples keyed by Ensembl id are renamed to the symbols the others use
    (:func:`cordatlas.atlas.genes.harmonise_gene_ids`). Whatever the join, the result says which
    sample measured which gene: ``var["n_samples_measured"]`` and ``uns["unmeasured_genes"]``
    (read them with :func:`measured_in_all` and :func:`unmeasured_by_sample`).

    Parameters
    ----------
    samples
        One AnnData per sample, obs_names unique across samples (``{sample}:{barcode}``).
    gene_join
        "inner": genes measured in every sample; "outer": all genes, zeros where not measured
        (those zeros are recorded as unmeasured, so cross-sample analyses skip them).
    min_cells_per_gene
        Genes detected in fewer cells (over all samples, after cell QC) are dropped.
    min_shared_genes
        Fewest genes every sample must measure, before and after the merge.

    Returns
    -------
    The merged AnnData (``X`` holds the raw counts, CSR float32, once: normalisation moves
    them to ``layers["counts"]``) and a JSON-serialisable record of what the merge did.

    Raises
    ------
    UserInputError
        No sample left after QC, ids that cannot be harmonised, fewer than `min_shared_genes`
        shared genes, no cells, or colliding cell names.
    """
    kept, dropped = _samples_kept(samples)
    kept, harmonised = harmonise_gene_ids(kept)
    measured = {sample_id(a): set(a.var_names.astype(str)) for a in kept}
    check_shared_genes(measured, min_shared_genes=min_shared_genes)
    union = set().union(*measured.values())
    merged = _concatenate(kept, gene_join=gene_join)
    gene_mask = _cells_per_gene(merged.X) >= min_cells_per_gene
    n_join = merged.n_vars
    if not gene_mask.all():  # a copy of the merged counts only when genes are dropped
        merged = merged[:, gene_mask].copy()
    for column in CATEGORICAL_OBS:
        if column in merged.obs:
            merged.obs[column] = merged.obs[column].astype(str).astype("category")
    record_measured_genes(merged, measured)
    n_shared = _check_merged(
        merged, min_shared_genes=min_shared_genes, min_cells=min_cells_per_gene
    )
    record = {
        "samples_merged": list(measured),
        "samples_dropped_by_qc": dropped,
        "genes_per_sample": {s: len(g) for s, g in measured.items()},
        "gene_ids_harmonised": harmonised,
        "gene_join": gene_join,
        "genes_in_union": len(union),
        "genes_after_join": int(n_join),
        "genes_dropped_by_join": int(len(union) - n_join),
        "min_cells_per_gene": int(min_cells_per_gene),
        "genes_dropped_min_cells": int((~gene_mask).sum()),
        "genes_kept": int(merged.n_vars),
        "genes_measured_in_all_samples": n_shared,
        "genes_unmeasured_per_sample": {s: len(g) for s, g in merged.uns[UNMEASURED_KEY].items()},
        "cells": int(merged.n_obs),
    }
    log.info("merge: %s", record)
    merged.uns["merge"] = record
    return merged, record


def _samples_kept(samples: Sequence[ad.AnnData]) -> tuple[list[ad.AnnData], list[str]]:
    """The samples QC kept, and the ids of those it dropped; refuses when none is left."""
    kept = [a for a in samples if not a.uns.get("qc", {}).get("dropped_sample", False)]
    dropped = [sample_id(a) for a in samples if a.uns.get("qc", {}).get("dropped_sample", False)]
    if not kept:
        raise UserInputError("no sample is left after QC; see results/qc/qc_summary.tsv")
    return kept, dropped


def _concatenate(kept: Sequence[ad.AnnData], *, gene_join: str) -> ad.AnnData:
    """ad.concat with zeros for unmeasured genes and every sample's gene ids; CSR float32 X."""
    # Per-sample QC annotations of genes are not comparable across samples; keep ids only.
    # New AnnData objects share each sample's matrix: the inputs are neither copied nor changed.
    kept = [
        ad.AnnData(X=a.X, obs=a.obs, var=a.var[[c for c in ("gene_ids",) if c in a.var]])
        for a in kept
    ]
    merged = ad.concat(
        kept, join=gene_join, merge="first", fill_value=0, index_unique=None, uns_merge=None
    )
    if any("gene_ids" in a.var for a in kept):
        # merge="first" takes the whole column from one sample; collect every sample's ids instead
        ids = pd.concat([a.var["gene_ids"] for a in kept if "gene_ids" in a.var])
        ids = ids[ids.notna()]
        merged.var["gene_ids"] = ids.groupby(level=0).first().reindex(merged.var_names).to_numpy()
    if merged.obs_names.has_duplicates:
        raise UserInputError(
            "cell names collide across samples; each sample id must be unique in the sample sheet"
        )
    merged.X = sp.csr_matrix(merged.X, dtype=np.float32)
    merged.X.sort_indices()  # in place; an outer join's reindexing can leave rows unsorted
    return merged


def _cells_per_gene(counts: sp.csr_matrix, chunk_cells: int = CHUNK_CELLS) -> np.ndarray:
    """Cells with a count > 0, per gene; read `chunk_cells` rows at a time.

    ``(counts > 0).sum(axis=0)`` would build a boolean copy of the whole matrix (with its
    indices), which at 83,413 cells took the merge from 3.9 to 5.0 GB.
    """
    detected = np.zeros(counts.shape[1], dtype=np.int64)
    for start in range(0, counts.shape[0], chunk_cells):
        lo, hi = counts.indptr[start], counts.indptr[min(start + chunk_cells, counts.shape[0])]
        values, genes = counts.data[lo:hi], counts.indices[lo:hi]
        detected += np.bincount(genes[values > 0], minlength=counts.shape[1])
    return detected


def _check_merged(merged: ad.AnnData, *, min_shared_genes: int, min_cells: int) -> int:
    """Refuse a merged atlas without cells or with too few genes measured everywhere."""
    if merged.n_obs == 0:
        raise UserInputError(
            "the merged atlas has no cells: every kept sample is empty after QC; see "
            "results/qc/qc_summary.tsv and relax the QC thresholds of config qc"
        )
    shared = measured_in_all(merged)
    n_shared = int(shared.sum())
    if n_shared < min_shared_genes:
        raise UserInputError(
            f"after dropping genes detected in fewer than {min_cells} cells (config "
            f"qc.min_cells_per_gene), {n_shared} genes measured in every sample remain of "
            f"{merged.n_vars} merged (config atlas.min_shared_genes: {min_shared_genes}); the "
            "samples share too few expressed genes: check gene naming and species, or lower "
            "qc.min_cells_per_gene or atlas.min_shared_genes"
        )
    return n_shared


def normalise(adata: ad.AnnData, *, target_sum: float | None = None) -> None:
    """Shifted logarithm of size-factor-normalised counts, in place; raw counts stay in `layers["counts"]`.

    log1p(counts / s_c * L), with s_c the cell's total count and L the median total (or
    `target_sum`): the shifted log transform recommended by Ahlmann-Eltze & Huber 2023 (Nat Methods).
    """
    if "counts" not in adata.layers:  # the merge's X: raw counts, kept as the layer
        adata.layers["counts"] = adata.X
    adata.X = adata.layers["counts"].copy()
    sc.pp.normalize_total(adata, target_sum=target_sum)
    sc.pp.log1p(adata)
    adata.uns["normalisation"] = {
        "method": "shifted log, log1p(x / size factor)",
        "target_sum": "median total counts" if target_sum is None else float(target_sum),
    }


def normalise_to_file(
    adata: ad.AnnData,
    path: str | os.PathLike[str],
    *,
    target_sum: float | None = None,
    chunk_cells: int = CHUNK_CELLS,
) -> None:
    """Write `adata` (raw counts in X, as merged) to `path` as :func:`normalise` leaves it.

    The counts become ``layers["counts"]`` and ``X`` the shifted log of :func:`normalise`,
    computed and written `chunk_cells` cells at a time with the study's size-factor target (the
    median total count of all cells, as ``sc.pp.normalize_total`` takes it, unless
    `target_sum`): the same file as normalising in memory and writing, while the job holds the
    counts and one chunk of normalised rows instead of both whole matrices.
    """
    counts = sp.csr_matrix(adata.X)
    totals = np.asarray(counts.sum(axis=1)).ravel()
    target = float(np.median(totals[totals > 0])) if target_sum is None else float(target_sum)

    def normalised(start: int) -> ad.AnnData:
        part = ad.AnnData(X=counts[start : start + chunk_cells])
        normalise(part, target_sum=target)
        return part

    first = normalised(0)
    record = {**first.uns["normalisation"]}
    if target_sum is None:
        record["target_sum"] = "median total counts"  # as normalise() records it
    out = ad.AnnData(
        obs=adata.obs,
        var=adata.var,
        obsm=adata.obsm,
        uns={**adata.uns, **first.uns, "normalisation": record},
        layers={"counts": counts},
    )
    rest = (normalised(start).X for start in range(chunk_cells, adata.n_obs, chunk_cells))
    write_stage_by_rows(out, path, itertools.chain([first.X], rest))


#: Batches with fewer cells are pooled before the per-batch fit: seurat_v3 fits a loess curve of
#: variance on mean per batch, and a few dozen cells give too few distinct gene means for it.
MIN_CELLS_PER_HVG_BATCH = 50
#: Label of the group that pools batches the per-batch fit cannot use.
POOLED_BATCH = "pooled_small_or_unfittable_batches"


def select_highly_variable_genes(
    adata: ad.AnnData, *, n_top_genes: int, batch_key: str | None, target_sum: float | None = None
) -> None:
    """Flag highly variable genes (scanpy flavour seurat_v3 on raw counts), ranked within batches.

    The raw counts are ``layers["counts"]`` after :func:`normalise`, else ``X`` (the merged
    counts, before normalisation: normalise_select_genes ranks genes first, then writes the
    normalised file in chunks, :func:`normalise_to_file`).
    Only genes measured in every sample (:func:`measured_in_all`) can be highly variable: a
    gene zero-filled in some samples by the outer join would look variable for that reason.
    Batches seurat_v3's per-batch loess fit cannot use (fewer than
    :data:`MIN_CELLS_PER_HVG_BATCH` cells, or a fit that fails on the batch alone, as on
    low-depth samples of a few hundred cells whose many genes share one mean) are pooled into
    one group and the fit retried; then the fit over all cells; then, if loess fails even there,
    scanpy's dispersion-based "seurat" flavour on the log-normalised expression (Satija et al.
    2015): ``X`` after :func:`normalise`, else the counts normalised as :func:`normalise` with
    `target_sum` would.
    Each step down is logged as a warning with the numbers and recorded in
    ``uns["hvg_params"]`` (``strategy``, ``pooled_batches``, ``attempts``).
    """
    key = _hvg_batch_key(adata, batch_key)
    shared = measured_in_all(adata)
    normalised = "counts" in adata.layers
    counts = adata.layers["counts"] if normalised else adata.X

    def measured(matrix):  # every gene shared (as after an inner join): no column copy
        return matrix if shared.all() else matrix[:, np.flatnonzero(shared)]

    def log_expression():
        if normalised:
            return measured(adata.X)
        copy = ad.AnnData(X=counts.copy())
        normalise(copy, target_sum=target_sum)
        return measured(copy.X)

    work = ad.AnnData(
        X=measured(counts),
        obs=pd.DataFrame(index=adata.obs_names.copy()),
        var=pd.DataFrame(index=adata.var_names[shared].copy()),
    )
    n_top = min(n_top_genes, work.n_vars)
    batches = None if key is None else adata.obs[key].astype(str).to_numpy()
    outcome = _fit_hvg_with_fallbacks(
        work, n_top=n_top, batches=batches, key=key, log_expression=log_expression
    )
    _write_hvg_columns(adata, work, shared)
    adata.uns["hvg_params"] = {
        "n_top_genes": n_top,
        "batch_key": "" if batch_key is None else str(batch_key),
        "genes_considered": int(shared.sum()),
        "genes_not_measured_in_every_sample": int((~shared).sum()),
        **outcome,
    }
    batched = outcome["strategy"].startswith("batched")
    adata.uns["hvg_params"]["batch_key_used"] = str(key) if batched else ""
    log.info("HVG: %d genes by %s (%s)", n_top, outcome["flavor"], "; ".join(outcome["attempts"]))
    if (~shared).any():
        log.info(
            "HVG: %d of %d genes are not measured in every sample and cannot be highly variable",
            int((~shared).sum()),
            adata.n_vars,
        )


def _hvg_batch_key(adata: ad.AnnData, batch_key: str | None) -> str | None:
    """The batch key, checked to be an obs column; None when absent or a single batch."""
    if batch_key is None:
        return None
    require_columns(
        adata.obs.columns,
        [batch_key],
        table="the merged atlas's obs",
        fix=f"set config atlas.hvg_batch_key to one of {sorted(adata.obs.columns)} or null",
    )
    if adata.obs[batch_key].nunique() < 2:
        log.info("HVG: batch key %r has a single value; ranking genes over all cells", batch_key)
        return None
    return batch_key


def _fit_hvg_with_fallbacks(
    work: ad.AnnData,
    *,
    n_top: int,
    batches: np.ndarray | None,
    key: str | None,
    log_expression: Callable[[], Any],
) -> dict[str, Any]:
    """Batched fit, with unusable batches pooled; then over all cells; then by dispersion."""
    attempts: list[str] = []
    outcome: dict[str, Any] = {"flavor": "seurat_v3", "pooled_batches": [], "cells_per_batch": {}}
    if batches is not None:
        outcome["cells_per_batch"] = {
            str(b): int(n) for b, n in zip(*np.unique(batches, return_counts=True), strict=True)
        }
        pooled = _fit_batched(work, n_top=n_top, batches=batches, key=key, attempts=attempts)
        if pooled is not None:
            strategy = "batched_with_pooled_group" if pooled else "batched"
            return {**outcome, "strategy": strategy, "pooled_batches": pooled, "attempts": attempts}
    if _try_seurat_v3(work, n_top=n_top, groups=None, attempts=attempts, label="all cells"):
        if batches is not None:
            log.warning(
                "HVG: no batched fit by %r worked (%s); highly variable genes were ranked over "
                "all %d cells together",
                key,
                "; ".join(attempts),
                work.n_obs,
            )
        return {**outcome, "strategy": "unbatched", "attempts": attempts}
    log.warning(
        "HVG: seurat_v3's loess fit failed on all %d cells too (%s); using the dispersion-based "
        "'seurat' flavour on log-normalised expression instead",
        work.n_obs,
        "; ".join(attempts),
    )
    work.layers["log"] = log_expression()
    sc.pp.highly_variable_genes(work, flavor="seurat", n_top_genes=n_top, layer="log")
    attempts.append("dispersion-based 'seurat' flavour over all cells: ok")
    return {**outcome, "flavor": "seurat", "strategy": "unbatched_dispersion", "attempts": attempts}


def _fit_batched(
    work: ad.AnnData, *, n_top: int, batches: np.ndarray, key: str | None, attempts: list[str]
) -> list[str] | None:
    """seurat_v3 per batch, small and failing batches pooled; the pooled batches, None on failure."""
    labels, sizes = np.unique(batches, return_counts=True)
    small = [str(b) for b, n in zip(labels, sizes, strict=True) if n < MIN_CELLS_PER_HVG_BATCH]
    pooled = list(small)
    if small:
        log.warning(
            "HVG: batches of %r with fewer than %d cells are pooled into one group: %s",
            key,
            MIN_CELLS_PER_HVG_BATCH,
            ", ".join(
                f"{b} ({n} cells)" for b, n in zip(labels, sizes, strict=True) if str(b) in small
            ),
        )
    groups = _pool(batches, pooled)
    n_groups = np.unique(groups).size
    if n_groups >= 2 and _try_seurat_v3(
        work, n_top=n_top, groups=groups, attempts=attempts, label=_groups_label(groups)
    ):
        return pooled
    failing = [
        str(b)
        for b in labels
        if str(b) not in pooled
        and not _try_seurat_v3(
            work[batches == b].copy(),
            n_top=n_top,
            groups=None,
            attempts=attempts,
            label=f"{b} alone",
        )
    ]
    failed = ", ".join(f"{b} ({int((batches == b).sum())} cells)" for b in failing)
    groups = _pool(batches, pooled + failing)
    if not failing or np.unique(groups).size in (1, n_groups):
        # nothing new to pool, or pooling would leave one group: the fit over all cells is next
        if failing:
            log.warning("HVG: seurat_v3's loess fit fails on batch(es) %s alone", failed)
        return None
    pooled += failing
    log.warning(
        "HVG: seurat_v3's loess fit fails on batch(es) %s alone; pooling them%s into one group "
        "and retrying",
        failed,
        f" with {', '.join(small)}" if small else "",
    )
    if _try_seurat_v3(
        work, n_top=n_top, groups=groups, attempts=attempts, label=_groups_label(groups)
    ):
        return pooled
    return None


def _pool(batches: np.ndarray, pooled: Sequence[str]) -> np.ndarray:
    return np.where(np.isin(batches, list(pooled)), POOLED_BATCH, batches)


def _groups_label(groups: np.ndarray) -> str:
    labels, sizes = np.unique(groups, return_counts=True)
    return "batches " + ", ".join(f"{b} ({n} cells)" for b, n in zip(labels, sizes, strict=True))


def _try_seurat_v3(
    work: ad.AnnData, *, n_top: int, groups: np.ndarray | None, attempts: list[str], label: str
) -> bool:
    """One seurat_v3 fit on raw counts; False (and the reason in `attempts`) if loess fails."""
    if groups is not None:
        work.obs["_hvg_batch"] = pd.Categorical(groups)
    try:
        sc.pp.highly_variable_genes(
            work,
            flavor="seurat_v3",
            n_top_genes=n_top,
            batch_key=None if groups is None else "_hvg_batch",
            subset=False,
        )
    except ValueError as error:
        if not _raised_by_loess(error):
            raise
        attempts.append(f"seurat_v3 on {label}: loess fit failed ({error})")
        return False
    finally:
        if "_hvg_batch" in work.obs:
            del work.obs["_hvg_batch"]
    attempts.append(f"seurat_v3 on {label}: ok")
    return True


def _raised_by_loess(error: BaseException) -> bool:
    """Whether `error` came out of scikit-misc's loess (seurat_v3's variance fit)."""
    frames = traceback.extract_tb(error.__traceback__)
    return any("loess" in f.filename or "skmisc" in f.filename for f in frames)


#: var columns scanpy's highly_variable_genes writes (either flavour), refreshed on every call.
_HVG_COLUMNS = (
    "highly_variable",
    "highly_variable_rank",
    "highly_variable_nbatches",
    "highly_variable_intersection",
    "means",
    "variances",
    "variances_norm",
    "dispersions",
    "dispersions_norm",
)


def _write_hvg_columns(adata: ad.AnnData, work: ad.AnnData, shared: np.ndarray) -> None:
    """Copy the fit's var columns onto `adata`; genes not measured everywhere are never HVG."""
    for column in _HVG_COLUMNS:
        if column in adata.var:
            del adata.var[column]
    index = np.flatnonzero(shared)
    for column in work.var.columns:
        if column not in _HVG_COLUMNS:
            continue
        values = work.var[column].to_numpy()
        if values.dtype == bool:
            full = np.zeros(adata.n_vars, dtype=bool)
        elif np.issubdtype(values.dtype, np.integer):
            full = np.zeros(adata.n_vars, dtype=values.dtype)
        else:
            full = np.full(adata.n_vars, np.nan, dtype=np.float64)
        full[index] = values
        adata.var[column] = full


def run_pca(adata: ad.AnnData, *, n_pcs: int, seed: int, chunk_cells: int = CHUNK_CELLS) -> None:
    """PCA on the highly variable genes of the log-normalised data (scaled to unit variance, clipped at 10).

    The same PCA as ``sc.pp.scale(max_value=10)`` then ``sc.pp.pca`` on the highly variable
    genes, computed as scikit-learn's ``covariance_eigh`` solver does (the eigenvectors of the
    genes x genes covariance), with the covariance summed `chunk_cells` cells at a time in
    float64: the scaled matrix is dense, so whole it would take 8 bytes x cells x genes (2.7 GB
    at 166,856 cells x 2,000 genes, and scikit-learn's centred copy as much again); here the job
    holds one chunk of it and the 2,000 x 2,000 covariance. Components are signed as
    scikit-learn signs them (largest loading of each positive). `seed` is kept for the call's
    signature: the eigendecomposition has no random start.
    """
    del seed  # deterministic: no random start vector (arpack's) to seed
    highly_variable = adata.var["highly_variable"].to_numpy(dtype=bool)
    n_cells, n_genes = adata.n_obs, int(highly_variable.sum())
    n_comps = min(n_pcs, n_cells - 1, n_genes - 1)
    matrix = adata.X[:, highly_variable] if highly_variable.sum() < adata.n_vars else adata.X

    def chunks():
        for start in range(0, n_cells, chunk_cells):
            block = matrix[start : start + chunk_cells]
            yield block.toarray() if sp.issparse(block) else np.asarray(block)

    # sc.pp.scale: each gene centred and divided by its standard deviation (ddof=1; 1 where 0)
    total, total_sq = np.zeros(n_genes), np.zeros(n_genes)
    for block in chunks():
        block = block.astype(np.float64, copy=False)
        total += block.sum(axis=0)
        total_sq += np.einsum("ij,ij->j", block, block)
    mean = total / n_cells
    std = np.sqrt(np.maximum(total_sq / n_cells - mean**2, 0) * n_cells / (n_cells - 1))
    std[std == 0] = 1

    def scaled():
        for block in chunks():
            yield np.clip((block.astype(np.float64) - mean) / std, -10, 10)

    # the covariance of the scaled, clipped matrix (clipping moves its means off zero)
    scaled_total, gram = np.zeros(n_genes), np.zeros((n_genes, n_genes))
    for block in scaled():
        scaled_total += block.sum(axis=0)
        gram += block.T @ block
    scaled_mean = scaled_total / n_cells
    covariance = (gram - n_cells * np.outer(scaled_mean, scaled_mean)) / (n_cells - 1)
    del gram
    values, vectors = scipy.linalg.eigh(
        covariance, subset_by_index=[n_genes - n_comps, n_genes - 1]
    )
    values, vectors = np.maximum(values[::-1], 0), vectors[:, ::-1]
    # scikit-learn's svd_flip(u_based_decision=False): each component's largest loading positive
    signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(n_comps)])
    vectors *= np.where(signs == 0, 1, signs)
    embedding = np.empty((n_cells, n_comps), dtype=np.float32)
    for start, block in zip(range(0, n_cells, chunk_cells), scaled(), strict=True):
        embedding[start : start + len(block)] = (block - scaled_mean) @ vectors
    adata.obsm["X_pca"] = embedding
    adata.uns["pca"] = {
        "params": {"zero_center": True, "use_highly_variable": True, "mask_var": "highly_variable"},
        "variance": values,
        "variance_ratio": values / np.trace(covariance),
    }
    loadings = np.zeros((adata.n_vars, n_comps), dtype=np.float32)
    loadings[highly_variable] = vectors
    adata.varm["PCs"] = loadings


def integrate(adata: ad.AnnData, *, method: str, key: str, seed: int, threads: int = 1) -> str:
    """Batch-correct the PCA embedding; returns the obsm key to build neighbours on.

    "none" keeps `X_pca`; "harmony" writes `X_pca_harmony` (harmonypy, Korsunsky et al. 2019).
    """
    if method == "none":
        adata.uns["integration"] = {"method": "none", "use_rep": "X_pca"}
        return "X_pca"
    if method != "harmony":
        raise UserInputError(f"config atlas.integration: {method!r}; use 'none' or 'harmony'")
    require_columns(
        adata.obs.columns,
        [key],
        table="the merged atlas's obs",
        fix=f"set config atlas.integration_key to one of {sorted(adata.obs.columns)}",
    )
    import harmonypy

    result = harmonypy.run_harmony(
        adata.obsm["X_pca"], adata.obs, [key], random_state=seed, verbose=False, ncores=threads
    )
    corrected = np.asarray(result.Z_corr)
    if corrected.shape[0] != adata.n_obs:
        corrected = corrected.T
    adata.obsm["X_pca_harmony"] = corrected.astype(np.float32)
    adata.uns["integration"] = {"method": "harmony", "key": key, "use_rep": "X_pca_harmony"}
    return "X_pca_harmony"


def cluster(
    adata: ad.AnnData,
    *,
    use_rep: str,
    n_neighbors: int,
    resolutions: Sequence[float],
    working_resolution: float,
    seed: int,
    exact_knn_max_cells: int = 200_000,
    threads: int = 1,
) -> None:
    """kNN graph and Leiden (igraph flavour) at each resolution; in place.

    The kNN graph is exact (:class:`~cordatlas.atlas.knn.ExactKNN`, faiss, on `threads`, with
    UMAP's connectivities, :func:`exact_neighbours`) up to `exact_knn_max_cells` cells,
    scanpy's approximate pynndescent search above (config atlas.exact_knn_max_cells).
    Every clustering is kept as ``obs[leiden_res{r}]``; ``obs["leiden"]`` is the working one.
    The UMAP of the graph is :func:`embed_umap`'s, a job of its own (only figures need it).
    """
    if n_neighbors < adata.n_obs <= exact_knn_max_cells:
        exact_neighbours(
            adata, use_rep=use_rep, n_neighbors=n_neighbors, seed=seed, threads=threads
        )
    else:
        sc.pp.neighbors(adata, n_neighbors=n_neighbors, use_rep=use_rep, random_state=seed)
        adata.uns["neighbors"]["params"]["knn"] = "pynndescent"
    for resolution in resolutions:
        sc.tl.leiden(
            adata,
            resolution=resolution,
            key_added=leiden_key(resolution),
            flavor="igraph",
            n_iterations=2,
            directed=False,
            random_state=seed,
        )
    adata.obs["leiden"] = adata.obs[leiden_key(working_resolution)].copy()
    adata.uns["leiden_params"] = {
        "resolutions": [float(r) for r in resolutions],
        "working_resolution": float(working_resolution),
        "flavor": "igraph",
        "seed": seed,
    }


def exact_neighbours(
    adata: ad.AnnData, *, use_rep: str, n_neighbors: int, seed: int, threads: int = 1
) -> None:
    """scanpy's neighbours graph (``sc.pp.neighbors`` with :class:`ExactKNN`), in place.

    The same ``obsp["distances"]`` (the transformer's graph: each cell and its `n_neighbors`
    nearest), ``obsp["connectivities"]`` (UMAP's fuzzy union of each cell and its
    ``n_neighbors - 1`` nearest, as scanpy computes it,
    :func:`~cordatlas.atlas.knn.fuzzy_connectivities`) and ``uns["neighbors"]``, without
    importing umap-learn: its import (pynndescent's compilation) and its connectivity
    functions' compilation cost 12 s of every cluster_cells job (docs/performance.md).
    """
    distances = ExactKNN(n_neighbors=n_neighbors, n_jobs=threads).fit_transform(adata.obsm[use_rep])
    per_cell = (adata.n_obs, n_neighbors + 1)
    indices = distances.indices.reshape(per_cell)[:, :n_neighbors]
    knn_dists = distances.data.reshape(per_cell)[:, :n_neighbors]
    adata.obsp["distances"] = distances
    adata.obsp["connectivities"] = fuzzy_connectivities(indices, knn_dists)
    adata.uns["neighbors"] = {
        "connectivities_key": "connectivities",
        "distances_key": "distances",
        "params": {
            "n_neighbors": n_neighbors,
            "method": "umap",
            "random_state": seed,
            "metric": "euclidean",
            "use_rep": use_rep,
            "knn": "exact",
        },
    }


#: How :func:`embed_umap` may start the layout.
UMAP_INITS = ("pca", "spectral")


def embed_umap(
    adata: ad.AnnData, *, use_rep: str, min_dist: float, seed: int, init: str = "pca"
) -> None:
    """UMAP of :func:`cluster`'s kNN graph (``obsp["connectivities"]``) into ``obsm["X_umap"]``.

    The layout starts from `init`: "pca" (the first two columns of `use_rep`) or "spectral".
    scanpy 1.11.5 lays it out on one thread; the rule runs it beside annotate_cells.
    """
    if init not in UMAP_INITS:
        raise ValueError(f"umap_init must be 'pca' or 'spectral', not {init!r}")
    init_pos = np.asarray(adata.obsm[use_rep][:, :2], dtype=np.float32) if init == "pca" else init
    sc.tl.umap(adata, min_dist=min_dist, init_pos=init_pos, random_state=seed)
    adata.uns["umap"]["params"]["init"] = init


def stage_part(adata: ad.AnnData, *, all_genes: pd.Index | None = None) -> ad.AnnData:
    """What an embedding stage hands on: the cells' results without any expression matrix.

    integrate_samples and cluster_cells add embeddings, graphs and obs columns, never change X
    or the counts: writing the whole AnnData each time copied the two largest matrices twice
    per stage. The part keeps obs, obsm, obsp, uns, the gene names and varm (PCA loadings);
    :func:`attach_part` puts it back onto the normalised data. `all_genes`: the normalised
    data's genes when `adata` holds some of them (integrate_samples reads the highly variable
    genes only); the part then names all of them, varm rows of the others zero (as
    :func:`run_pca` writes them for genes outside the PCA).
    """
    varm = dict(adata.varm)
    var_names = adata.var_names
    if all_genes is not None:
        rows = all_genes.get_indexer(adata.var_names)
        if (rows < 0).any():
            raise ValueError("all_genes must hold every gene of adata")
        for key, values in varm.items():
            wide = np.zeros((len(all_genes), *np.shape(values)[1:]), dtype=np.asarray(values).dtype)
            wide[rows] = values
            varm[key] = wide
        var_names = all_genes
    return ad.AnnData(
        obs=adata.obs.copy(),
        var=pd.DataFrame(index=pd.Index(var_names).copy()),
        obsm=dict(adata.obsm),
        obsp=dict(adata.obsp),
        varm=varm,
        uns=dict(adata.uns),
    )


def umap_part(adata: ad.AnnData) -> ad.AnnData:
    """:func:`embed_umap`'s part: the cells and genes with ``obsm["X_umap"]`` and ``uns["umap"]``.

    The other annotations stay in the cluster part it was laid out from; write_atlas attaches
    both (:func:`attach_part`).
    """
    return ad.AnnData(
        obs=pd.DataFrame(index=adata.obs_names.copy()),
        var=pd.DataFrame(index=adata.var_names.copy()),
        obsm={"X_umap": adata.obsm["X_umap"]},
        uns={"umap": adata.uns["umap"]},
    )


def attach_part(adata: ad.AnnData, part: ad.AnnData) -> None:
    """Copy a :func:`stage_part`'s obs columns, obsm, obsp, varm and uns onto `adata`, in place.

    Raises
    ------
    ValueError
        The part holds other cells or genes, or the same ones in another order (it was not
        made from this data: rerun the stages after normalise_select_genes).
    """
    if not adata.obs_names.equals(part.obs_names) or not adata.var_names.equals(part.var_names):
        raise ValueError(
            "the embedding/cluster part does not hold the normalised data's cells and genes in "
            "the same order; rerun the workflow from integrate_samples (--forcerun "
            "integrate_samples)"
        )
    for column in part.obs.columns:
        adata.obs[column] = part.obs[column]  # same index: dtypes (categories) kept
    for store, target in (
        (part.obsm, adata.obsm),
        (part.obsp, adata.obsp),
        (part.varm, adata.varm),
    ):
        for key, value in store.items():
            target[key] = value
    adata.uns.update(part.uns)


def cluster_sizes(adata: ad.AnnData, resolutions: Sequence[float]) -> pd.DataFrame:
    """Number of clusters and smallest/largest cluster size per resolution."""
    rows = []
    for resolution in resolutions:
        counts = adata.obs[leiden_key(resolution)].value_counts()
        rows.append(
            {
                "resolution": float(resolution),
                "n_clusters": int(counts.size),
                "smallest": int(counts.min()),
                "largest": int(counts.max()),
            }
        )
    return pd.DataFrame(rows)
