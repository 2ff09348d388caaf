"""Adapter for rule integrate_samples: PCA, then batch correction of the embedding (or none).

Writes only what it adds (embeddings, PCA loadings, obs and uns): no expression matrix.
"""

import anndata as ad

from cordatlas.atlas.build import integrate, run_pca, stage_part
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
    write_stage(stage_part(adata), snakemake.output.h5ad)
