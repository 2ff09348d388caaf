"""Adapter for rule embed_umap: the UMAP of the kNN graph, and its figure by cluster and sample.

Runs beside annotate_cells (nothing but figures and the delivered atlas needs the layout);
reads and writes no expression matrix.
"""

import anndata as ad

from cordatlas.atlas.build import embed_umap, umap_part
from cordatlas.checks import check_cells_genes
from cordatlas.io.stage import write_stage
from cordatlas.logs import rule_logging
from cordatlas.plotting.atlas import plot_umap

with rule_logging(snakemake.log[0]):
    adata = ad.read_h5ad(snakemake.input.h5ad)
    params = snakemake.params
    embed_umap(
        adata,
        use_rep=adata.uns["integration"]["use_rep"],
        min_dist=params.umap_min_dist,
        init=params.umap_init,
        seed=params.seed,
    )
    plot_umap(
        adata,
        keys=["leiden", "condition", "donor", "sample"],
        path=snakemake.output.umap,
        contrast=params.contrast.as_tuple(),
    )
    part = umap_part(adata)
    check_cells_genes(
        part,
        snakemake.output.h5ad,
        require_obsm=("X_umap",),
        what=" (the UMAP)",
        fix=f"check {snakemake.input.h5ad} and this job's log",
    )
    write_stage(part, snakemake.output.h5ad)
