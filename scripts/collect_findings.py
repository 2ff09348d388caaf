"""Adapter for rule collect_findings: one row per tested claim, read from the results tables."""

from cordatlas.checks import check_table
from cordatlas.logs import rule_logging
from cordatlas.report.findings import FINDINGS_COLUMNS, findings_from_files

with rule_logging(snakemake.log[0]) as log:
    findings = findings_from_files(
        composition=snakemake.input.composition,
        signatures=snakemake.input.signatures,
        cycling=snakemake.input.cycling,
        development=snakemake.input.development,
        # within-lineage comparisons (rule test_compartments), read where the rule gives them
        subsets=getattr(snakemake.input, "subsets", None),
        compartments=getattr(snakemake.input, "compartments", None),
        de_summary=snakemake.input.de_summary,
        de_all=snakemake.input.de_all,
        design_findings=snakemake.input.design_findings,
        alpha=snakemake.params.alpha,
        contrast=snakemake.params.contrast.as_tuple(),
    )
    # a run with nothing tested legitimately has no finding: the report still reads the header
    check_table(
        findings,
        snakemake.output.table,
        required_columns=FINDINGS_COLUMNS,
        fix="rerun collect_findings; report the log if it fails again",
    )
    findings.to_csv(snakemake.output.table, sep="\t", index=False)
    log.info("findings: %d rows (%s)", len(findings), findings["evidence"].value_counts().to_dict())
