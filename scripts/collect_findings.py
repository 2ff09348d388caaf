"""Adapter for rule collect_findings: one row per tested claim, read from the results tables."""

from cordatlas.logs import rule_logging
from cordatlas.report.findings import findings_from_files

with rule_logging(snakemake.log[0]) as log:
    findings = findings_from_files(
        composition=snakemake.input.composition,
        signatures=snakemake.input.signatures,
        de_summary=snakemake.input.de_summary,
        de_all=snakemake.input.de_all,
        design_findings=snakemake.input.design_findings,
        alpha=snakemake.params.alpha,
        contrast=snakemake.params.contrast.as_tuple(),
    )
    findings.to_csv(snakemake.output.table, sep="\t", index=False)
    log.info("findings: %d rows (%s)", len(findings), findings["evidence"].value_counts().to_dict())
