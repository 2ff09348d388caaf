"""Adapter for rule integrate_samples: PCA, then batch correction of the embedding (or none).

Writes only what it adds (embeddings, PCA loadings, obs and uns): no expression matrix.
"""

import anndata as ad

from cordatlas.atlas.build import integrate, run_pca, stage_part
from cordatlas.checks import check_cells_genes
from cordatlas.io.stage import write_stage
from cordatlas.logs import rule_logging

with rule_logging(snakemake.log[0]) as log:
    adata = ad.read_h5ad(snakemake.input.h5ad)
    run_pca(adata, n_pcs=snakemake.params.n_pcs, seed=snakemake.params.seed)
    use_rep = integrate(
        adata,
        method=snakemake.params.method,
        key=snakemake.params.key,
        seed=snakemake.params.seed,
        threads=snakemake.threads,
    )
    log.info("neighbours will use %s", use_rep)
    part = stage_part(adata)
    check_cells_genes(
        part,
        snakemake.output.h5ad,
        require_obsm=("X_pca", use_rep),
        what=" (the embedding)",
        fix=f"check {snakemake.input.h5ad} and this job's log",
    )
    write_stage(part, snakemake.output.h5ad)
