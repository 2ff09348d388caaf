"""Cluster marker genes: Wilcoxon rank-sum of each cluster against all other cells."""

from __future__ import annotations

import anndata as ad
import pandas as pd
import scanpy as sc


def find_markers(adata: ad.AnnData, *, groupby: str = "leiden", n_genes: int = 25) -> pd.DataFrame:
    """Top marker genes per cluster (scanpy's Wilcoxon test on log-normalised X, BH-adjusted).

    Cells are the observations here, so p-values describe how well a gene separates a cluster,
    not evidence across donors; use them to name clusters, not as differential expression.

    Returns
    -------
    One row per (cluster, rank): `cluster`, `rank`, `gene`, `score`, `log2FC`, `pval`, `padj`,
    `pct_in` (fraction of the cluster's cells expressing the gene) and `pct_out`.
    """
    work = ad.AnnData(
        X=adata.X, obs=adata.obs[[groupby]].copy(), var=pd.DataFrame(index=adata.var_names)
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
