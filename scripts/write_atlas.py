"""Adapter for rule write_atlas: the annotated cells with their UMAP -> results/atlas.h5ad.

The atlas a user keeps: the annotated stage file's matrices copied by chunks (compressed), its
annotations with embed_umap's layout, and the UMAP by cell type. No analysis rule reads it, so
it is written beside them.
"""

import anndata as ad

from cordatlas.atlas.build import attach_part
from cordatlas.checks import check_cells_genes
from cordatlas.io.stage import copy_as_deliverable, read_without_matrices
from cordatlas.logs import rule_logging
from cordatlas.plotting.atlas import plot_umap

with rule_logging(snakemake.log[0]):
    adata = read_without_matrices(snakemake.input.h5ad)
    attach_part(adata, ad.read_h5ad(snakemake.input.umap))
    plot_umap(
        adata,
        keys=["cell_type", "condition", "donor", "sample"],
        path=snakemake.output.umap,
        contrast=snakemake.params.contrast.as_tuple(),
    )
    check_cells_genes(
        adata,
        snakemake.output.h5ad,
        require_obs=("cell_type", "leiden", "sample", "donor", "condition"),
        require_obsm=("X_umap",),
        what=" (the annotated atlas)",
        fix=f"check {snakemake.input.h5ad}, {snakemake.input.umap} and this job's log",
    )
    copy_as_deliverable(snakemake.input.h5ad, snakemake.output.h5ad, adata)
