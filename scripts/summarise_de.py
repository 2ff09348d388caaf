"""Adapter for rule summarise_de: one row per cell type (test, evidence, donors, hits) and every DE table in one file."""

import pandas as pd

from cordatlas.checks import check_table
from cordatlas.compare.de_summary import DE_COLUMNS, SUMMARY_COUNTS, de_summary, read_de_table
from cordatlas.compare.plan import (
    METHOD_CELL_LEVEL,
    METHOD_PSEUDOBULK,
    PLAN_COLUMNS,
    planned_tables,
    read_plan,
)
from cordatlas.logs import rule_logging

with rule_logging(snakemake.log[0]) as log:
    plan = read_plan(snakemake.input.plan)
    folders = {
        METHOD_PSEUDOBULK: snakemake.input.pseudobulk,
        METHOD_CELL_LEVEL: snakemake.input.cell_level,
    }
    tables = [read_de_table(path) for path in planned_tables(plan, folders)]
    results = {str(t["cell_type"].iloc[0]): t for t in tables if not t.empty}
    summary = de_summary(plan, results, alpha=snakemake.params.alpha)
    combined = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=DE_COLUMNS)
    fix = f"rerun the DE jobs of {snakemake.input.plan}; report the log if it fails again"
    # one row per planned cell type; no cell type may have a gene tested
    check_table(
        summary,
        snakemake.output.summary,
        required_columns=(*PLAN_COLUMNS, *SUMMARY_COUNTS),
        min_rows=len(plan),
        fix=fix,
    )
    check_table(combined, snakemake.output.table, required_columns=DE_COLUMNS, fix=fix)
    summary.to_csv(snakemake.output.summary, sep="\t", index=False)
    combined.to_csv(snakemake.output.table, sep="\t", index=False)
    log.info("cell types with DE results: %d", len(results))
    log.info(
        "significant genes: %d, of which %d carry contamination_flag",
        int(summary["n_significant"].sum()),
        int(summary["n_significant_flagged"].sum()),
    )
