"""Cluster marker genes: Wilcoxon rank-sum of each cluster against all other cells.

The test is illico's (``illico.asymptotic_wilcoxon``, one-versus-rest), which computes scanpy's
``rank_genes_groups(method="wilcoxon", tie_correct=True)`` exactly (same z scores, p-values,
BH-adjusted p-values and log2 fold changes; ``tests/unit/test_atlas.py`` compares the two) in
a fraction of the time: on 20,000 cells x 3,000 genes and 12 clusters 0.3 s against 16 s.
"""

from __future__ import annotations

import logging
import os

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cordatlas.atlas.genes import measured_in_all

log = logging.getLogger(__name__)


def _wilcoxon_one_vs_rest(work: ad.AnnData, groupby: str, threads: int) -> dict:
    """scanpy's rank_genes_groups result (wilcoxon, tie-corrected, no continuity), by illico."""
    os.environ.setdefault("TQDM_DISABLE", "1")  # illico's progress bars stay out of the logs
    from illico import asymptotic_wilcoxon
    from loguru import logger

    logger.disable("illico")
    return asymptotic_wilcoxon(
        work,
        group_keys=groupby,
        reference=None,
        is_log1p=True,
        use_continuity=False,
        tie_correct=True,
        exp_post_agg=True,
        n_threads=threads,
        return_as_scanpy=True,
    )


def _fraction_expressing(work: ad.AnnData, groupby: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per cluster (columns) and gene (rows): fraction of its cells, and of all others, > 0."""
    groups = work.obs[groupby].astype("category")
    onehot = sp.csr_matrix(
        (np.ones(work.n_obs), (groups.cat.codes.to_numpy(), np.arange(work.n_obs))),
        shape=(len(groups.cat.categories), work.n_obs),
    )
    expressed = sp.csr_matrix(work.X, copy=True)
    expressed.data = (expressed.data > 0).astype(np.float64)
    counts = np.asarray((onehot @ expressed).todense())
    sizes = np.asarray(onehot.sum(axis=1)).ravel()
    total, n = counts.sum(axis=0), work.n_obs
    names = [str(c) for c in groups.cat.categories]
    inside = pd.DataFrame((counts / sizes[:, None]).T, index=work.var_names, columns=names)
    rest = (total[None, :] - counts) / np.maximum(n - sizes, 1)[:, None]
    return inside, pd.DataFrame(rest.T, index=work.var_names, columns=names)


def find_markers(
    adata: ad.AnnData, *, groupby: str = "leiden", n_genes: int = 25, threads: int = 1
) -> pd.DataFrame:
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
    result = _wilcoxon_one_vs_rest(work, groupby, threads)
    fraction_in, fraction_out = _fraction_expressing(work, groupby)
    rows = []
    for cluster in result["names"].dtype.names:
        pts = fraction_in[cluster]
        pts_rest = fraction_out[cluster]
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
