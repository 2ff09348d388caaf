"""Adapter for rule evaluate_integration: integration metrics per Leiden resolution and the verdict."""

import anndata as ad

from cordatlas.atlas.integration_metrics import integration_metrics, integration_verdict
from cordatlas.logs import rule_logging

with rule_logging(snakemake.log[0]) as log:
    contrast = snakemake.params.contrast.as_tuple()
    batch_key = snakemake.params.batch_key
    adata = ad.read_h5ad(snakemake.input.h5ad)
    adata = adata[adata.obs["condition"].astype(str).isin(contrast)]
    metrics = integration_metrics(
        adata,
        resolutions=snakemake.params.resolutions,
        batch_key=batch_key,
        use_rep=adata.uns["integration"]["use_rep"],
        cell_type_key="cell_type",
        condition_key="condition",
        seed=snakemake.params.seed,
    )
    metrics.to_csv(snakemake.output.metrics, sep="\t", index=False)
    batches = adata.obs.groupby("condition", observed=True)[batch_key].nunique()
    verdict = integration_verdict(
        metrics,
        working_resolution=snakemake.params.working_resolution,
        batches_per_condition=int(batches.min()),
    )
    row = verdict.iloc[0]
    (log.info if row["level"] == "good" else log.warning)("design: %s", row["message"])
    verdict.to_csv(snakemake.output.verdict, sep="\t", index=False)
