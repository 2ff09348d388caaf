"""Adapter for rule evaluate_integration: integration metrics per Leiden resolution and the verdict."""

from cordatlas.atlas.integration_metrics import integration_metrics, integration_verdict
from cordatlas.checks import check_table
from cordatlas.design import FINDING_COLUMNS
from cordatlas.io.stage import read_without_matrices
from cordatlas.logs import rule_logging

with rule_logging(snakemake.log[0]) as log:
    contrast = snakemake.params.contrast.as_tuple()
    batch_key = snakemake.params.batch_key
    # labels, embeddings and the kNN graph: the expression matrices are never read
    adata = read_without_matrices(snakemake.input.h5ad)
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
    fix = f"check {snakemake.input.h5ad} holds the contrast's cells; see this job's log"
    check_table(
        metrics,
        snakemake.output.metrics,
        required_columns=("resolution", "clustering", "n_clusters"),
        min_rows=len(snakemake.params.resolutions),
        what=" (one per Leiden resolution)",
        fix=fix,
    )
    metrics.to_csv(snakemake.output.metrics, sep="\t", index=False)
    batches = adata.obs.groupby("condition", observed=True)[batch_key].nunique()
    verdict = integration_verdict(
        metrics,
        working_resolution=snakemake.params.working_resolution,
        batches_per_condition=int(batches.min()),
    )
    # the report reads it beside design_findings.tsv, in that table's format
    check_table(
        verdict,
        snakemake.output.verdict,
        required_columns=(*FINDING_COLUMNS, "level"),
        min_rows=1,
        fix=fix,
    )
    row = verdict.iloc[0]
    (log.info if row["level"] == "good" else log.warning)("design: %s", row["message"])
    verdict.to_csv(snakemake.output.verdict, sep="\t", index=False)
