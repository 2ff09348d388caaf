"""Adapter for rule integrate_samples: PCA, then batch correction of the embedding (or none).

Writes only what it adds (embeddings, PCA loadings, obs and uns): no expression matrix.
"""

from cordatlas.atlas.build import integrate, run_pca, stage_part
from cordatlas.checks import check_cells_genes
from cordatlas.io.stage import read_genes, read_var, write_stage
from cordatlas.logs import rule_logging

with rule_logging(snakemake.log[0]) as log:
    # PCA reads the highly variable genes only: neither the other genes nor the counts layer
    # are read (at 100,000 cells the whole file took this job to 6.5 GB)
    genes = read_var(snakemake.input.h5ad)
    adata = read_genes(snakemake.input.h5ad, genes["highly_variable"].to_numpy(dtype=bool))
    run_pca(adata, n_pcs=snakemake.params.n_pcs, seed=snakemake.params.seed)
    use_rep = integrate(
        adata,
        method=snakemake.params.method,
        key=snakemake.params.key,
        seed=snakemake.params.seed,
        threads=snakemake.threads,
    )
    log.info("neighbours will use %s", use_rep)
    part = stage_part(adata, all_genes=genes.index)
    check_cells_genes(
        part,
        snakemake.output.h5ad,
        require_obsm=("X_pca", use_rep),
        what=" (the embedding)",
        fix=f"check {snakemake.input.h5ad} and this job's log",
    )
    write_stage(part, snakemake.output.h5ad)
