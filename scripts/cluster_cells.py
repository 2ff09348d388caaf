"""Adapter for rule cluster_cells: neighbours and Leiden at each resolution.

Reads and writes only the embedding part (no expression matrix): annotate_cells attaches it;
embed_umap lays the graph out beside annotation.
"""

import anndata as ad

from cordatlas.atlas.build import cluster, cluster_sizes, stage_part
from cordatlas.checks import check_cells_genes
from cordatlas.io.stage import write_stage
from cordatlas.logs import rule_logging

with rule_logging(snakemake.log[0]):
    adata = ad.read_h5ad(snakemake.input.h5ad)
    params = snakemake.params
    cluster(
        adata,
        use_rep=adata.uns["integration"]["use_rep"],
        n_neighbors=params.n_neighbors,
        exact_knn_max_cells=params.exact_knn_max_cells,
        threads=snakemake.threads,
        resolutions=params.resolutions,
        working_resolution=params.working_resolution,
        seed=params.seed,
    )
    cluster_sizes(adata, params.resolutions).to_csv(snakemake.output.sizes, sep="\t", index=False)
    part = stage_part(adata)
    check_cells_genes(
        part,
        snakemake.output.h5ad,
        require_obs=("leiden",),
        what=" (the clusters)",
        fix=f"check {snakemake.input.h5ad} and this job's log",
    )
    write_stage(part, snakemake.output.h5ad)
