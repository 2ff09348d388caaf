"""Adapter for rule normalise_select_genes: shifted-log normalisation and highly variable genes."""

import anndata as ad

from cordatlas.atlas.build import normalise, select_highly_variable_genes
from cordatlas.checks import check_cells_genes
from cordatlas.io.stage import write_stage
from cordatlas.logs import rule_logging

with rule_logging(snakemake.log[0]):
    adata = ad.read_h5ad(snakemake.input.h5ad)
    normalise(adata, target_sum=snakemake.params.target_sum)
    select_highly_variable_genes(
        adata, n_top_genes=snakemake.params.n_top_genes, batch_key=snakemake.params.hvg_batch_key
    )
    check_cells_genes(
        adata,
        snakemake.output.h5ad,
        require_layers=("counts",),
        counts="counts",
        what=" (the normalised atlas)",
        fix=f"check {snakemake.input.h5ad} (results/merge/merge_summary.tsv) and this job's log",
    )
    if not adata.var["highly_variable"].any():
        check_cells_genes(
            adata[:, adata.var["highly_variable"].to_numpy()],
            snakemake.output.h5ad,
            what=" highly variable",
            fix="raise config atlas.n_top_genes or check the merged genes",
        )
    write_stage(adata, snakemake.output.h5ad)
