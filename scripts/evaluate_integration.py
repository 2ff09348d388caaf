"""Adapter for rule evaluate_integration: batch mixing and cell-type separation per Leiden resolution."""

import anndata as ad

from cordatlas.atlas.integration_metrics import integration_metrics
from cordatlas.logs import rule_logging

with rule_logging(snakemake.log[0]):
    adata = ad.read_h5ad(snakemake.input.h5ad)
    metrics = integration_metrics(
        adata,
        resolutions=snakemake.params.resolutions,
        batch_key=snakemake.params.batch_key,
        use_rep=adata.uns["integration"]["use_rep"],
        cell_type_key="cell_type",
        seed=snakemake.params.seed,
    )
    metrics.to_csv(snakemake.output[0], sep="\t", index=False)
