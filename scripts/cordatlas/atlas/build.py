"""From per-sample QC'd counts to an atlas: merge, normalise, highly variable genes, PCA, integration, clustering, UMAP."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

from cordatlas.checks import require_columns
from cordatlas.config import METADATA_COLUMNS
from cordatlas.errors import UserInputError

log = logging.getLogger(__name__)

#: obs columns that are categorical in the atlas (cellxgene shows categorical obs as colours).
CATEGORICAL_OBS = ("sample", *METADATA_COLUMNS)


def leiden_key(resolution: float) -> str:
    """obs column of the Leiden clustering at `resolution` (e.g. `leiden_res0.5`, `leiden_res1.0`)."""
    return f"leiden_res{float(resolution)}"


def merge_samples(
    samples: Sequence[ad.AnnData],
    *,
    gene_join: str = "inner",
    min_cells_per_gene: int = 3,
) -> tuple[ad.AnnData, dict[str, Any]]:
    """Concatenate per-sample AnnData (raw counts in X) into one, keeping raw counts in a layer.

    Samples QC dropped (``uns["qc"]["dropped_sample"]``) are left out and listed in the report.

    Parameters
    ----------
    samples
        One AnnData per sample, obs_names unique across samples (``{sample}:{barcode}``).
    gene_join
        "inner": genes measured in every sample; "outer": all genes, zeros where not measured.
    min_cells_per_gene
        Genes detected in fewer cells (over all samples, after cell QC) are dropped.

    Returns
    -------
    The merged AnnData (X and ``layers["counts"]`` hold raw counts, CSR float32) and a
    JSON-serialisable record of what the merge did.
    """
    kept = [a for a in samples if not a.uns.get("qc", {}).get("dropped_sample", False)]
    dropped = [
        str(a.obs["sample"].iloc[0]) if a.n_obs else a.uns["qc"]["sample"]
        for a in samples
        if a.uns.get("qc", {}).get("dropped_sample", False)
    ]
    if not kept:
        raise UserInputError("no sample is left after QC; see results/qc/qc_summary.tsv")
    genes_per_sample = {str(a.obs["sample"].iloc[0]): int(a.n_vars) for a in kept}
    union = set().union(*(set(a.var_names) for a in kept))
    for a in kept:
        # Per-sample QC annotations of genes are not comparable across samples; keep ids only.
        a.var = a.var[[c for c in ("gene_ids",) if c in a.var]]
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
    n_cells_per_gene = np.asarray((merged.X > 0).sum(axis=0)).ravel()
    gene_mask = n_cells_per_gene >= min_cells_per_gene
    n_join = merged.n_vars
    merged = merged[:, gene_mask].copy()
    merged.layers["counts"] = merged.X.copy()
    for column in CATEGORICAL_OBS:
        if column in merged.obs:
            merged.obs[column] = merged.obs[column].astype(str).astype("category")
    record = {
        "samples_merged": [str(s) for s in genes_per_sample],
        "samples_dropped_by_qc": dropped,
        "genes_per_sample": genes_per_sample,
        "gene_join": gene_join,
        "genes_in_union": len(union),
        "genes_after_join": int(n_join),
        "genes_dropped_by_join": int(len(union) - n_join),
        "min_cells_per_gene": int(min_cells_per_gene),
        "genes_dropped_min_cells": int((~gene_mask).sum()),
        "genes_kept": int(merged.n_vars),
        "cells": int(merged.n_obs),
    }
    log.info("merge: %s", record)
    merged.uns["merge"] = record
    return merged, record


def normalise(adata: ad.AnnData, *, target_sum: float | None = None) -> None:
    """Shifted logarithm of size-factor-normalised counts, in place; raw counts stay in `layers["counts"]`.

    log1p(counts / s_c * L), with s_c the cell's total count and L the median total (or
    `target_sum`): the shifted log transform recommended by Ahlmann-Eltze & Huber 2023 (Nat Methods).
    """
    if "counts" not in adata.layers:
        adata.layers["counts"] = adata.X.copy()
    adata.X = adata.layers["counts"].copy()
    sc.pp.normalize_total(adata, target_sum=target_sum)
    sc.pp.log1p(adata)
    adata.uns["normalisation"] = {
        "method": "shifted log, log1p(x / size factor)",
        "target_sum": "median total counts" if target_sum is None else float(target_sum),
    }


def select_highly_variable_genes(
    adata: ad.AnnData, *, n_top_genes: int, batch_key: str | None
) -> None:
    """Flag highly variable genes (scanpy flavour seurat_v3 on raw counts), ranked within batches.

    Batches with too few cells for seurat_v3's loess fit are merged into one group with a warning.
    """
    n_top = min(n_top_genes, adata.n_vars)
    key = batch_key
    if key is not None:
        require_columns(
            adata.obs.columns,
            [key],
            table="the merged atlas's obs",
            fix=f"set config atlas.hvg_batch_key to one of {sorted(adata.obs.columns)} or null",
        )
        if adata.obs[key].nunique() < 2 or adata.obs[key].value_counts().min() < 50:
            log.warning(
                "HVG: batch key %r has a group with < 50 cells or a single group; ranking genes "
                "over all cells instead",
                key,
            )
            key = None
    sc.pp.highly_variable_genes(
        adata, flavor="seurat_v3", n_top_genes=n_top, layer="counts", batch_key=key, subset=False
    )
    adata.uns["hvg_params"] = {"flavor": "seurat_v3", "n_top_genes": n_top, "batch_key": key}


def run_pca(adata: ad.AnnData, *, n_pcs: int, seed: int) -> None:
    """PCA on the highly variable genes of the log-normalised data (scaled to unit variance, clipped at 10)."""
    n_comps = min(n_pcs, adata.n_obs - 1, int(adata.var["highly_variable"].sum()) - 1)
    hvg = adata[:, adata.var["highly_variable"]].copy()
    sc.pp.scale(hvg, max_value=10)
    sc.pp.pca(hvg, n_comps=n_comps, random_state=seed, svd_solver="arpack")
    adata.obsm["X_pca"] = hvg.obsm["X_pca"]
    adata.uns["pca"] = hvg.uns["pca"]
    loadings = np.zeros((adata.n_vars, n_comps), dtype=np.float32)
    loadings[adata.var["highly_variable"].to_numpy()] = hvg.varm["PCs"]
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
    umap_min_dist: float,
    seed: int,
) -> None:
    """kNN graph, Leiden (igraph flavour) at each resolution, UMAP; in place.

    Every clustering is kept as ``obs[leiden_res{r}]``; ``obs["leiden"]`` is the working one.
    """
    sc.pp.neighbors(adata, n_neighbors=n_neighbors, use_rep=use_rep, random_state=seed)
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
    sc.tl.umap(adata, min_dist=umap_min_dist, random_state=seed)


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
