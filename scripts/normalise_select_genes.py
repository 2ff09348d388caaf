"""Adapter for rule normalise_select_genes: highly variable genes, then shifted-log normalisation.

The genes are ranked on the merged counts; the normalised file (counts as ``layers["counts"]``,
the shifted log as ``X``) is then written a chunk of cells at a time, so the job never holds
the normalised matrix whole beside the counts.
"""

import anndata as ad

from cordatlas.atlas.build import normalise_to_file, select_highly_variable_genes
from cordatlas.checks import check_cells_genes
from cordatlas.logs import rule_logging

with rule_logging(snakemake.log[0]):
    adata = ad.read_h5ad(snakemake.input.h5ad)
    check_cells_genes(
        adata,
        snakemake.output.h5ad,
        counts="X",
        what=" (the merged counts)",
        fix=f"check {snakemake.input.h5ad} (results/merge/merge_summary.tsv) and this job's log",
    )
    select_highly_variable_genes(
        adata,
        n_top_genes=snakemake.params.n_top_genes,
        batch_key=snakemake.params.hvg_batch_key,
        target_sum=snakemake.params.target_sum,
    )
    if not adata.var["highly_variable"].any():
        check_cells_genes(
            adata[:, adata.var["highly_variable"].to_numpy()],
            snakemake.output.h5ad,
            what=" highly variable",
            fix="raise config atlas.n_top_genes or check the merged genes",
        )
    normalise_to_file(adata, snakemake.output.h5ad, target_sum=snakemake.params.target_sum)
