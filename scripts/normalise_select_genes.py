"""Adapter for rule normalise_select_genes: shifted-log normalisation and highly variable genes."""

import anndata as ad

from cordatlas.atlas.build import normalise, select_highly_variable_genes
from cordatlas.io.stage import write_stage
from cordatlas.logs import rule_logging

with rule_logging(snakemake.log[0]):
    adata = ad.read_h5ad(snakemake.input.h5ad)
    normalise(adata, target_sum=snakemake.params.target_sum)
    select_highly_variable_genes(
        adata, n_top_genes=snakemake.params.n_top_genes, batch_key=snakemake.params.hvg_batch_key
    )
    write_stage(adata, snakemake.output.h5ad)
