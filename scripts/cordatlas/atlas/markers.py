"""Cluster marker genes: Wilcoxon rank-sum of each cluster against all other cells."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc

from cordatlas.atlas.genes import measured_in_all

log = logging.getLogger(__name__)


def find_markers(adata: ad.AnnData, *, groupby: str = "leiden", n_genes: int = 25) -> pd.DataFrame:
    """Top marker genes per cluster (scanpy's Wilcoxon test on log-normalised X, BH-adjusted).

    Cells are the observations here, so p-values describe how well a gene separates a cluster,
    not evidence across donors; use them to name clusters, not as differential expression.
    Only genes measured in every sample are ranked (:func:`cordatlas.atlas.genes.measured_in_all`):
    a gene zero-filled in the samples that did not measure it would mark the clusters of the
    samples that did.

    Returns
    -------
    One row per (cluster, rank): `cluster`, `rank`, `gene`, `score`, `log2FC`, `pval`, `padj`,
    `pct_in` (fraction of the cluster's cells expressing the gene) and `pct_out`.
    """
    measured = measured_in_all(adata)
    if not measured.all():
        log.info(
            "markers: %d of %d genes are not measured in every sample and are not ranked",
            int((~measured).sum()),
            adata.n_vars,
        )
    columns = np.flatnonzero(measured)
    work = ad.AnnData(
        X=adata.X[:, columns],
        obs=adata.obs[[groupby]].copy(),
        var=pd.DataFrame(index=adata.var_names[columns]),
    )
    sc.tl.rank_genes_groups(work, groupby=groupby, method="wilcoxon", pts=True, tie_correct=True)
    result = work.uns["rank_genes_groups"]
    rows = []
    for cluster in result["names"].dtype.names:
        pts = result["pts"][cluster]
        pts_rest = result["pts_rest"][cluster]
        for rank in range(min(n_genes, len(result["names"][cluster]))):
            gene = result["names"][cluster][rank]
            rows.append(
                {
                    "cluster": cluster,
                    "rank": rank + 1,
                    "gene": gene,
                    "score": float(result["scores"][cluster][rank]),
                    "log2FC": float(result["logfoldchanges"][cluster][rank]),
                    "pval": float(result["pvals"][cluster][rank]),
                    "padj": float(result["pvals_adj"][cluster][rank]),
                    "pct_in": float(pts[gene]),
                    "pct_out": float(pts_rest[gene]),
                }
            )
    adata.uns["rank_genes_groups"] = result
    return pd.DataFrame(rows)
